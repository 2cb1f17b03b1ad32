/* eslint-disable @typescript-eslint/no-explicit-any */
// A real DNS server on loopback (dns2, over UDP) serving the records a test names:
// DNSBL A records, SPF TXT, DKIM keys, DMARC records. Names under a `silent` suffix
// get no answer at all, so the client times out; any other name is NXDOMAIN.
import dns2 from 'dns2';
import type { AddressInfo } from 'node:net';

const { Packet } = dns2;

export type Zone = Record<string, { A?: string[]; TXT?: Array<string | string[]>; MX?: Array<{ exchange: string; priority: number }>; ttl?: number }>;

export type TestDns = {
  /** "127.0.0.1:PORT", for the `dns.servers` setting. */
  server: string;
  /** Every question asked, as "TYPE name". */
  asked: string[];
  zone: Zone;
  close(): Promise<void>;
};

const TYPE_NAMES: Record<number, string> = { [Packet.TYPE.A]: 'A', [Packet.TYPE.TXT]: 'TXT', [Packet.TYPE.MX]: 'MX', [Packet.TYPE.AAAA]: 'AAAA' };

/** Splits a long TXT value into character-strings of at most 255 octets, as a zone file would. */
function strings(v: string | string[]): string[] {
  if (Array.isArray(v)) return v;
  const out: string[] = [];
  for (let i = 0; i < v.length; i += 255) out.push(v.slice(i, i + 255));
  return out.length ? out : [''];
}

/** silent: names under these suffixes get no answer; servfail: names under these get SERVFAIL; port: a fixed UDP port (to stop and start it again at the same address). */
export async function startDns(zone: Zone, opts: { silent?: string[]; servfail?: string[]; port?: number } = {}): Promise<TestDns> {
  const asked: string[] = [];
  const server = dns2.createServer({
    udp: true,
    handle: (request: any, send: (r: any) => void) => {
      const response: any = Packet.createResponseFromRequest(request);
      const q = request.questions[0];
      if (!q) return send(response);
      const name = String(q.name).toLowerCase().replace(/\.$/, '');
      const type = TYPE_NAMES[q.type] ?? String(q.type);
      asked.push(`${type} ${name}`);
      if ((opts.silent ?? []).some((s) => name === s || name.endsWith('.' + s))) return; // never answer
      if ((opts.servfail ?? []).some((s) => name === s || name.endsWith('.' + s))) {
        response.header.rcode = Packet.RCODE.SERVFAIL;
        return send(response);
      }
      const rr = zone[name];
      if (!rr) {
        response.header.rcode = Packet.RCODE.NXDOMAIN;
        return send(response);
      }
      const ttl = rr.ttl ?? 300;
      if (type === 'A') for (const address of rr.A ?? []) response.answers.push({ name: q.name, type: Packet.TYPE.A, class: Packet.CLASS.IN, ttl, address });
      if (type === 'TXT') for (const t of rr.TXT ?? []) response.answers.push({ name: q.name, type: Packet.TYPE.TXT, class: Packet.CLASS.IN, ttl, data: strings(t) });
      if (type === 'MX') for (const m of rr.MX ?? []) response.answers.push({ name: q.name, type: Packet.TYPE.MX, class: Packet.CLASS.IN, ttl, exchange: m.exchange, priority: m.priority });
      send(response);
    },
  });
  server.on('requestError', () => undefined);
  await server.listen({ udp: { port: opts.port ?? 0, address: '127.0.0.1' } });
  const port = ((server as any).addresses().udp as AddressInfo).port;
  return {
    server: `127.0.0.1:${port}`,
    asked,
    zone,
    close: () => server.close(),
  };
}
