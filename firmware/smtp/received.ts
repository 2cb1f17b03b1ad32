/*
 * smtp/received.ts: the Received: trace header moat adds to each message
 * (RFC 5321 §4.4), as the first bytes stored for it.
 *
 * Everything in it that a client chose (the HELO name) is reduced to safe
 * characters, so no client can inject a header line. Called by smtp/inbound.ts.
 */
import type { Envelope } from '../queue/spool.ts';

const SAFE = /[^A-Za-z0-9.\-_:[\]]/g;

export function receivedHeader(o: { hostname: string; id: string; envelope: Envelope; date: Date }): Buffer {
  const e = o.envelope;
  const helo = (e.client.helo || 'unknown').slice(0, 255).replace(SAFE, '?');
  const ip = e.client.address.replace(/^::ffff:/, '');
  const withProto = e.client.tls ? 'ESMTPS' : 'ESMTP';
  const forPart = e.to.length === 1 ? `\r\n\tfor <${e.to[0]}>` : '';
  return Buffer.from(
    `Received: from ${helo} ([${ip}])\r\n\tby ${o.hostname} (moat) with ${withProto} id ${o.id}${forPart};\r\n\t${rfc5322Date(o.date)}\r\n`,
    'latin1',
  );
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const p2 = (n: number) => String(n).padStart(2, '0');

/** "Sat, 28 Nov 2026 09:26:27 +0000" (UTC: the appliance keeps UTC). */
export function rfc5322Date(d: Date): string {
  return `${DAYS[d.getUTCDay()]}, ${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ${p2(d.getUTCHours())}:${p2(d.getUTCMinutes())}:${p2(d.getUTCSeconds())} +0000`;
}
