// A real DNS server on loopback (UDP) that answers MX queries from a zone; NXDOMAIN for names it
// does not have. Same call shape as the policy tests' DNS helper (startDns(zone) → server, asked),
// so either serves the control socket's DNS test.
import { createSocket } from 'node:dgram';
import type { AddressInfo } from 'node:net';

export type MxZone = Record<string, { MX?: Array<{ exchange: string; priority: number }> }>;
export type DnsServer = { server: string; asked: string[]; close(): Promise<void> };

function encodeName(name: string): Buffer {
  const parts = name.split('.').filter(Boolean).map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'ascii')]));
  return Buffer.concat([...parts, Buffer.from([0])]);
}

export async function startDns(zone: MxZone): Promise<DnsServer> {
  const sock = createSocket('udp4');
  const asked: string[] = [];
  sock.on('message', (q, peer) => {
    if (q.length < 17) return;
    let off = 12;
    const labels: string[] = [];
    while (off < q.length && q[off]! > 0) {
      labels.push(q.subarray(off + 1, off + 1 + q[off]!).toString('ascii'));
      off += q[off]! + 1;
    }
    const qEnd = off + 5;
    const name = labels.join('.').toLowerCase();
    const qtype = q.readUInt16BE(off + 1);
    asked.push(`${qtype === 15 ? 'MX' : qtype} ${name}`);
    const records = qtype === 15 ? zone[name]?.MX : undefined;
    const known = Object.hasOwn(zone, name);
    const header = Buffer.alloc(12);
    q.copy(header, 0, 0, 2);
    header.writeUInt16BE(0x8180 | (known ? 0 : 3), 2);
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(records?.length ?? 0, 6);
    const answers = (records ?? []).map((r) => {
      const rdata = Buffer.concat([Buffer.from([r.priority >> 8, r.priority & 255]), encodeName(r.exchange)]);
      const a = Buffer.alloc(12);
      a.writeUInt16BE(0xc00c, 0);
      a.writeUInt16BE(15, 2);
      a.writeUInt16BE(1, 4);
      a.writeUInt32BE(300, 6);
      a.writeUInt16BE(rdata.length, 10);
      return Buffer.concat([a, rdata]);
    });
    sock.send(Buffer.concat([header, q.subarray(12, qEnd), ...answers]), peer.port, peer.address);
  });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  const { port } = sock.address() as AddressInfo;
  return { server: `127.0.0.1:${port}`, asked, close: () => new Promise((r) => sock.close(() => r())) };
}
