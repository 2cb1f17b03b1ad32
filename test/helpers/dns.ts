// A real DNS server on loopback (UDP) that answers MX queries from a table; NXDOMAIN for the rest.
import { createSocket } from 'node:dgram';
import type { AddressInfo } from 'node:net';

export type DnsServer = { address: string; queries: string[]; close(): Promise<void> };

function encodeName(name: string): Buffer {
  const parts = name.split('.').filter(Boolean).map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'ascii')]));
  return Buffer.concat([...parts, Buffer.from([0])]);
}

export async function startDns(mx: Record<string, Array<{ exchange: string; priority: number }>>): Promise<DnsServer> {
  const sock = createSocket('udp4');
  const queries: string[] = [];
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
    queries.push(name);
    const records = qtype === 15 ? mx[name] : undefined;
    const known = Object.hasOwn(mx, name);
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
  return { address: `127.0.0.1:${port}`, queries, close: () => new Promise((r) => sock.close(() => r())) };
}
