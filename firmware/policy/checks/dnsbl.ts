/*
 * policy/checks/dnsbl.ts: DNS blocklists and allowlists.
 *
 * Asks every configured zone about the client's address (reversed octets, or
 * nibbles for IPv6, under the zone) at once; a zone lists the client when one
 * of its A answers lies in the zone's `answers` ranges (so 127.255.255.254,
 * "you are over quota", never counts). The weights of the listing zones add
 * up; at policy.dnsbl.threshold the client is refused with 554 5.7.1 naming the
 * zone, below it the score counts toward the message's spam score (an
 * allowlist has a negative weight).
 *
 * A DNS failure (timeout, SERVFAIL) of a zone counts as "not listed": a slow
 * blocklist must not stop mail (the one exception to failing closed). Must
 * never query for internal clients, never put an answer's text in a reply.
 * Listed as `dnsbl`.
 */
import { isIP } from 'node:net';
import { CONTINUE, type Check } from '../chain.ts';
import type { CheckServices } from '../registry.ts';
import { PolicyReplies } from '../replies.ts';

/** 192.0.2.1 → 1.2.0.192; 2001:db8::1 → 32 nibbles reversed. Null when not an IP address. */
export function reverseName(ip: string): string | null {
  const v = isIP(ip);
  if (v === 4) return ip.split('.').reverse().join('.');
  if (v !== 6) return null;
  const halves = ip.split('::');
  const part = (s: string | undefined) => (s ? s.split(':') : []);
  const head = part(halves[0]);
  const tail = part(halves[1]);
  if (head.concat(tail).some((g) => g.includes('.'))) return null; // IPv4-mapped: normalised before
  const groups = [...head, ...Array(8 - head.length - tail.length).fill('0'), ...tail];
  return groups
    .map((g) => g.padStart(4, '0'))
    .join('')
    .split('')
    .reverse()
    .join('.');
}

function toInt(ip: string): number {
  return ip.split('.').reduce((n, o) => n * 256 + Number(o), 0);
}

/** Parses "127.0.0.2" or "127.0.0.2-127.0.0.11" into inclusive integer ranges. */
export function parseRanges(list: readonly string[]): Array<[number, number]> {
  return list.map((r) => {
    const [a, b] = r.split('-');
    return [toInt(a!), toInt(b ?? a!)];
  });
}

export function dnsblCheck(s: CheckServices): Check {
  const cfg = s.config.policy.dnsbl;
  const zones = cfg.zones.map((z) => ({ zone: z.zone.toLowerCase(), weight: z.weight, ranges: parseRanges(z.answers) }));
  return {
    name: 'dnsbl',
    async run(ctx) {
      if (ctx.internal || zones.length === 0) return CONTINUE;
      const rev = reverseName(ctx.ip);
      if (!rev) return CONTINUE;
      const outcomes = await Promise.all(
        zones.map(async (z) => {
          try {
            const answers = (await s.resolver.resolve(`${rev}.${z.zone}`, 'A')) as string[];
            const listed = answers.some((a) => isIP(a) === 4 && z.ranges.some(([lo, hi]) => toInt(a) >= lo && toInt(a) <= hi));
            return { z, listed, failed: null as string | null };
          } catch (e) {
            const code = (e as { code?: string }).code ?? 'EFAIL';
            return { z, listed: false, failed: code === 'ENOTFOUND' || code === 'ENODATA' ? null : code };
          }
        }),
      );
      for (const o of outcomes) if (o.failed) s.log.info({ ev: 'dnsbl-unavailable', cid: ctx.cid, zone: o.z.zone, code: o.failed }, 'DNSBL lookup failed; counted as not listed');
      const listed = outcomes.filter((o) => o.listed);
      if (listed.length === 0) return { action: 'continue', reason: outcomes.some((o) => o.failed) ? 'dns-unavailable' : 'not-listed' };
      const score = Math.round(listed.reduce((n, o) => n + o.z.weight, 0) * 100) / 100;
      const names = listed.map((o) => o.z.zone).join(',');
      if (score >= cfg.threshold) {
        const worst = listed.reduce((a, b) => (b.z.weight > a.z.weight ? b : a));
        return { action: 'reject', reply: PolicyReplies.dnsbl(worst.z.zone), reason: `listed: ${names} (score ${score})` };
      }
      return { action: 'tag', reason: `listed: ${names}`, score };
    },
  };
}
