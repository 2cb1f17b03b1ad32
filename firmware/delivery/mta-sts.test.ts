// MTA-STS (RFC 8461) in outbound delivery, through the wire: policies from HTTPS
// servers on 127.0.0.x:443 (certificates from throw-away CAs, added to this test
// process's trusted CAs as a public CA would be), TXT and MX records from a DNS
// server on loopback, SMTP sinks on loopback as the MX hosts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { Readable } from 'node:stream';
import { OutboundDelivery } from './outbound.ts';
import { MtaStsPolicies } from './mta-sts.ts';
import { DnsResolver } from '../dns/resolver.ts';
import { createLogger } from '../log/logger.ts';
import { startSink } from '../../test/helpers/sink.ts';
import { startDns } from '../../test/helpers/dns.ts';
import { makePki } from '../../test/helpers/certs.ts';

const BODY = Buffer.from('From: alice@example.com\r\nSubject: sts\r\n\r\nhello\r\n');
const job = (to: string) => ({ id: '0000000000030000', from: 'alice@example.com', to: [to], size: BODY.length, open: () => Readable.from([BODY]) });

async function policyHost(address: string, name: string, body: string) {
  const pki = makePki(name);
  const requests: string[] = [];
  const server = https.createServer({ key: pki.key, cert: pki.cert }, (req, res) => {
    requests.push(`${req.headers.host} ${req.url}`);
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(443, address, () => r()));
  return { ca: pki.ca, requests, close: () => new Promise<void>((r) => server.close(() => r())) };
}

const policy = (mode: string, mx: string[]) => `version: STSv1\r\nmode: ${mode}\r\n${mx.map((m) => `mx: ${m}\r\n`).join('')}max_age: 86400\r\n`;

test('MTA-STS: enforce keeps only the MX hosts the policy names, over verified TLS; testing only logs; a policy too large or too slow counts as none; a policy is fetched once', async () => {
  const mxPki = makePki('mx.sts.example');
  const good = await startSink({ host: '127.0.0.87', server: { hideSTARTTLS: false, key: mxPki.key, cert: mxPki.cert } });
  const plain = await startSink({ host: '127.0.0.88', port: good.port }); // no STARTTLS
  const hosts = [
    await policyHost('127.0.0.86', 'mta-sts.sts.example', policy('enforce', ['mx.sts.example'])),
    await policyHost('127.0.0.89', 'mta-sts.notls.example', policy('enforce', ['*.notls.example'])),
    await policyHost('127.0.0.90', 'mta-sts.big.example', policy('enforce', ['mx.sts.example']) + `x-padding: ${'p'.repeat(70 * 1024)}\r\n`),
    await policyHost('127.0.0.97', 'mta-sts.test.example', policy('testing', ['mx.elsewhere.example'])),
  ];
  // a policy host that takes the connection and never answers
  const sockets = new Set<net.Socket>();
  const silent = net.createServer((s) => sockets.add(s.on('error', () => undefined)));
  await new Promise<void>((r) => silent.listen(443, '127.0.0.96', () => r()));
  tls.setDefaultCACertificates([...tls.getCACertificates('default'), mxPki.ca, ...hosts.map((h) => h.ca)]);
  const txt = (id: string) => ({ TXT: [`v=STSv1; id=${id};`] });
  const dns = await startDns({
    'sts.example': { MX: [{ exchange: 'mx.evil.example', priority: 5 }, { exchange: 'mx.sts.example', priority: 10 }] },
    '_mta-sts.sts.example': txt('20261128a'),
    'mta-sts.sts.example': { A: ['127.0.0.86'] },
    'mx.sts.example': { A: ['127.0.0.87'] },
    'mx.evil.example': { A: ['127.0.0.88'] },
    'notls.example': { MX: [{ exchange: 'mx.notls.example', priority: 10 }] },
    '_mta-sts.notls.example': txt('20261128b'),
    'mta-sts.notls.example': { A: ['127.0.0.89'] },
    'mx.notls.example': { A: ['127.0.0.88'] },
    'big.example': { MX: [{ exchange: 'mx.evil.example', priority: 10 }] },
    '_mta-sts.big.example': txt('20261128c'),
    'mta-sts.big.example': { A: ['127.0.0.90'] },
    'slow.example': { MX: [{ exchange: 'mx.evil.example', priority: 10 }] },
    '_mta-sts.slow.example': txt('20261128d'),
    'mta-sts.slow.example': { A: ['127.0.0.96'] },
    'test.example': { MX: [{ exchange: 'mx.evil.example', priority: 10 }] },
    '_mta-sts.test.example': txt('20261128e'),
    'mta-sts.test.example': { A: ['127.0.0.97'] },
  });
  const lines: Array<Record<string, unknown>> = [];
  const log = createLogger('info', { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  const resolve = new DnsResolver({ servers: [dns.server], timeoutMs: 500, cacheEntries: 100, maxTtlMs: 1000, negativeTtlMs: 1000 }).resolve;
  const out = new OutboundDelivery({
    hostname: 'mx.example.com',
    port: good.port,
    connectTimeoutMs: 2000,
    commandTimeoutMs: 5000,
    resolve,
    log,
    mtaSts: new MtaStsPolicies({ resolve, timeoutMs: 800, maxPolicyBytes: 64 * 1024, maxEntries: 10 }),
  });
  try {
    // enforce: the better MX is not in the policy and is skipped; the named one takes it over verified TLS
    const r1 = await out.deliver(job('a@sts.example'));
    assert.equal(r1.outcomes[0]!.status, 'delivered', r1.outcomes[0]!.reply);
    assert.deepEqual(good.messages.map((m) => [m.to[0], m.secure]), [['a@sts.example', true]]);
    assert.match(String(lines.find((l) => l.ev === 'deliver-attempt' && l.server === 'mx.sts.example[127.0.0.87]')?.tls), / verified$/);
    assert.deepEqual(lines.find((l) => l.ev === 'mta-sts' && l.domain === 'sts.example')?.notInPolicy, ['mx.evil.example']);
    const r2 = await out.deliver(job('b@sts.example'));
    assert.equal(r2.outcomes[0]!.status, 'delivered');
    assert.equal(hosts[0]!.requests.length, 1, 'the policy was fetched once');
    assert.deepEqual(hosts[0]!.requests, ['mta-sts.sts.example /.well-known/mta-sts.txt']);

    // enforce, but the (named) MX offers no STARTTLS: deferred, nothing sent in plaintext
    const r3 = await out.deliver(job('c@notls.example'));
    assert.equal(r3.outcomes[0]!.status, 'deferred');
    assert.match(r3.outcomes[0]!.reply, /STARTTLS required but not offered/);

    // testing: delivered as usual, the mismatch logged
    const r4 = await out.deliver(job('d@test.example'));
    assert.equal(r4.outcomes[0]!.status, 'delivered');
    assert.deepEqual(lines.find((l) => l.ev === 'mta-sts' && l.domain === 'test.example')?.notInPolicy, ['mx.evil.example']);

    // a policy over maxPolicyBytes, and a policy host that never answers: no policy (RFC 8461 §5), delivered
    const r5 = await out.deliver(job('e@big.example'));
    assert.equal(r5.outcomes[0]!.status, 'delivered');
    assert.match(String(lines.find((l) => l.ev === 'mta-sts' && l.domain === 'big.example')?.err), /larger than 65536 bytes/);
    const r6 = await out.deliver(job('f@slow.example'));
    assert.equal(r6.outcomes[0]!.status, 'delivered');
    assert.match(String(lines.find((l) => l.ev === 'mta-sts' && l.domain === 'slow.example')?.err), /timeout/i);

    assert.deepEqual(plain.messages.map((m) => m.to[0]), ['d@test.example', 'e@big.example', 'f@slow.example']);
    assert.ok(!plain.rcpts.some((r) => /@(sts|notls)\.example$/.test(r.address)), 'nothing for an enforcing domain went to a host outside its policy or without TLS');
  } finally {
    out.close();
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => silent.close(() => r()));
    for (const h of hosts) await h.close();
    await good.close();
    await plain.close();
    await dns.close();
  }
});

test('MTA-STS in moatd: with outbound.mtaSts.enabled an enforcing domain gets its mail only through the MX host its policy names', async () => {
  const { withRelay } = await import('../../test/helpers/moat.ts');
  const { RawSmtp } = await import('../../test/helpers/smtp-client.ts');
  const mxPki = makePki('mx.sts2.example');
  const good = await startSink({ host: '127.0.0.99', server: { hideSTARTTLS: false, key: mxPki.key, cert: mxPki.cert } });
  const evil = await startSink({ host: '127.0.0.100', port: good.port });
  const host = await policyHost('127.0.0.98', 'mta-sts.sts2.example', policy('enforce', ['mx.sts2.example']));
  tls.setDefaultCACertificates([...tls.getCACertificates('default'), mxPki.ca, host.ca]);
  const dns = await startDns({
    'sts2.example': { MX: [{ exchange: 'mx.evil2.example', priority: 5 }, { exchange: 'mx.sts2.example', priority: 10 }] },
    '_mta-sts.sts2.example': { TXT: ['v=STSv1; id=1;'] },
    'mta-sts.sts2.example': { A: ['127.0.0.98'] },
    'mx.sts2.example': { A: ['127.0.0.99'] },
    'mx.evil2.example': { A: ['127.0.0.100'] },
  });
  try {
    await withRelay({ internal: { networks: ['127.0.0.1/32'] }, dns: { servers: [dns.server], timeoutMs: 500 }, outbound: { port: good.port, mtaSts: { enabled: true } } }, async ({ moat }) => {
      const c = await RawSmtp.greeted(moat.port, 'app.corp.example');
      assert.match(await c.cmd('MAIL FROM:<alice@example.com>'), /^250/);
      assert.match(await c.cmd('RCPT TO:<bob@sts2.example>'), /^250/);
      assert.match(await c.cmd('DATA'), /^354/);
      assert.match(await c.cmd('Subject: sts\r\n\r\nhi\r\n.'), /^250 /);
      c.end();
      const [m] = await good.waitFor(1);
      assert.deepEqual([m!.to, m!.secure], [['bob@sts2.example'], true]);
      assert.equal(evil.rcpts.length, 0);
      assert.equal(host.requests.length, 1);
    });
  } finally {
    await host.close();
    await good.close();
    await evil.close();
    await dns.close();
  }
});
