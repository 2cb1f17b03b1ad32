// The health model through real parts: a sink that goes down, a real DNS server that stops
// answering, a full tmpfs, a closed clamd port and a real clamd, a certificate about to expire.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import { startMoat, withRelay } from './helpers/moat.ts';
import { closedPort, startSink } from './helpers/sink.ts';
import { startDns } from './helpers/dns.ts';
import { makePki } from './helpers/certs.ts';
import { startClamd } from './helpers/clamd.ts';
import { withTmpfs } from './helpers/tmpfs.ts';
import { startStoredMoat } from './helpers/control.ts';

const zone = { 'example.com': { MX: [{ exchange: 'mx.example.com', priority: 10 }] } };
const codes = (r: { reasons: Array<{ code: string }> }) => r.reasons.map((x) => x.code).sort();

async function send(port: number) {
  const t = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true, name: 'client.example.net' });
  await t.sendMail({ from: 'a@example.net', to: 'b@example.com', subject: 'x', text: 'hello' });
  t.close();
}

test('booting until the first round; ok when everything answers; an internal server that goes down degrades', async () => {
  const dns = await startDns(zone);
  const sink = await startSink();
  const moat = await startMoat([{ port: sink.port }], { dns: { servers: [dns.server] } });
  try {
    assert.equal(moat.monitor.report().state, 'booting');
    const r = await moat.monitor.check();
    assert.deepEqual(r.reasons, []);
    assert.equal(r.state, 'ok');
    assert.ok(dns.asked.includes('MX example.com'), 'the DNS probe asked the configured server');
    await sink.close();
    const down = await moat.monitor.check();
    assert.equal(down.state, 'degraded');
    assert.deepEqual(codes(down), ['internal-unreachable']);
    assert.match(down.reasons[0]!.message, new RegExp(`127\\.0\\.0\\.1:${sink.port}: ECONNREFUSED`));
  } finally {
    await moat.stop();
    await dns.close();
  }
});

test('a server that accepts but does not greet is unreachable after the probe timeout; one that greets otherwise is too', async () => {
  const dns = await startDns(zone);
  const { silentServer } = await import('./helpers/sink.ts');
  const silent = await silentServer();
  const { createServer } = await import('node:net');
  const rude = createServer((s) => s.end('554 go away\r\n'));
  await new Promise<void>((r) => rude.listen(0, '127.0.0.1', () => r()));
  const rudePort = (rude.address() as { port: number }).port;
  const moat = await startMoat([{ port: silent.port }, { port: rudePort }], { dns: { servers: [dns.server] }, health: { probeTimeoutMs: 300 } });
  try {
    const r = await moat.monitor.check();
    assert.equal(r.state, 'degraded');
    const messages = r.reasons.map((x) => x.message).join('\n');
    assert.match(messages, new RegExp(`${silent.port}: no answer within 300 ms`));
    assert.match(messages, new RegExp(`${rudePort}: unexpected answer "554 go away"`));
  } finally {
    await moat.stop();
    await silent.close();
    rude.close();
    await dns.close();
  }
});

test('a queue backing up (count and age) degrades', async () => {
  const dns = await startDns(zone);
  const down = await closedPort();
  const moat = await startMoat([{ port: down }], { dns: { servers: [dns.server] }, health: { queueMessages: 2, queueAgeMs: 1000 } });
  try {
    await send(moat.port);
    let r = await moat.monitor.check();
    assert.deepEqual(codes(r), ['internal-unreachable']);
    await send(moat.port);
    r = moat.monitor.report();
    assert.deepEqual(codes(r), ['internal-unreachable', 'queue-backlog']);
    assert.match(r.reasons.find((x) => x.code === 'queue-backlog')!.message, /^2 messages queued/);
    // the age: the monitor's clock is the wall clock; a message is made old by waiting past queueAgeMs
    await new Promise((res) => setTimeout(res, 1100));
    r = moat.monitor.report();
    assert.deepEqual(codes(r), ['internal-unreachable', 'queue-backlog', 'queue-old']);
    assert.equal(moat.transactions, 2);
  } finally {
    await moat.stop();
    await dns.close();
  }
});

test('DNS not answering degrades; "no such name" is an answer', async () => {
  const dns = await startDns({}, { silent: ['example.com'] });
  const nx = await startDns({});
  const sink = await startSink();
  const moat = await startMoat([{ port: sink.port }], { dns: { servers: [dns.server], timeoutMs: 200 } });
  const moat2 = await startMoat([{ port: sink.port }], { dns: { servers: [nx.server] } });
  try {
    const r = await moat.monitor.check();
    assert.deepEqual(codes(r), ['dns-failing']);
    assert.match(r.reasons[0]!.message, /MX example\.com: ETIMEOUT/);
    assert.equal((await moat2.monitor.check()).state, 'ok');
  } finally {
    await moat.stop();
    await moat2.stop();
    await sink.close();
    await dns.close();
    await nx.close();
  }
});

test('a data partition running full degrades, then faults; when nothing can be written the spool is unwritable', async () => {
  const dns = await startDns(zone);
  const sink = await startSink();
  try {
    await withTmpfs('8m', async (dir) => {
      const moat = await startMoat([{ port: sink.port }], { dataDir: dir, dns: { servers: [dns.server] }, storage: { minFreeBytes: 2 * 1024 * 1024 }, health: { lowFreeBytes: 4 * 1024 * 1024 } });
      try {
        assert.equal((await moat.monitor.check()).state, 'ok');
        await writeFile(join(dir, 'filler-1'), Buffer.alloc(5 * 1024 * 1024));
        let r = await moat.monitor.check();
        assert.deepEqual(codes(r), ['disk-low']);
        assert.equal(r.state, 'degraded');
        await writeFile(join(dir, 'filler-2'), Buffer.alloc(1536 * 1024));
        r = await moat.monitor.check();
        assert.deepEqual(codes(r), ['disk-full']);
        assert.equal(r.state, 'fault');
        // fill every last block
        await writeFile(join(dir, 'filler-3'), Buffer.alloc(8 * 1024 * 1024)).catch((e) => assert.equal(e.code, 'ENOSPC'));
        r = await moat.monitor.check();
        assert.deepEqual(codes(r), ['disk-full', 'spool-unwritable']);
        assert.match(r.reasons.find((x) => x.code === 'spool-unwritable')!.message, /ENOSPC/);
      } finally {
        await moat.stop();
      }
    });
  } finally {
    await sink.close();
    await dns.close();
  }
});

test('certificate expiry: a certificate valid for two more days degrades with the default warning of 14 days', async () => {
  const dns = await startDns(zone);
  const sink = await startSink();
  const pki = makePki('mx.example.com');
  const tls = { certFile: pki.certFile, keyFile: pki.keyFile };
  const warn = await startMoat([{ port: sink.port }], { dns: { servers: [dns.server] }, inbound: { tls } });
  const quiet = await startMoat([{ port: sink.port }], { dns: { servers: [dns.server] }, inbound: { tls }, health: { certWarnDays: 1 } });
  try {
    const r = await warn.monitor.check();
    assert.deepEqual(codes(r), ['certificate-expiring']);
    assert.match(r.reasons[0]!.message, /expires on .* \(in 1 days\)/);
    assert.equal((await quiet.monitor.check()).state, 'ok');
  } finally {
    await warn.stop();
    await quiet.stop();
    await sink.close();
    await dns.close();
  }
});

test('clamd: a closed port degrades, a running clamd answers PONG', async () => {
  const dns = await startDns(zone);
  const sink = await startSink();
  const clamd = await startClamd('Test.Sig:0:*:6d6f61742d74657374');
  const closed = await closedPort();
  const bad = await startMoat([{ port: sink.port }], { dns: { servers: [dns.server] }, scan: { clamd: { address: `127.0.0.1:${closed}` } } });
  const good = await startMoat([{ port: sink.port }], { dns: { servers: [dns.server] }, scan: { clamd: { address: clamd.socket } } });
  try {
    const r = await bad.monitor.check();
    assert.deepEqual(codes(r), ['clamd-unreachable']);
    assert.match(r.reasons[0]!.message, /ECONNREFUSED/);
    assert.equal((await good.monitor.check()).state, 'ok');
  } finally {
    await bad.stop();
    await good.stop();
    await clamd.stop();
    await sink.close();
    await dns.close();
  }
});

test('clock: degraded until the time-sync file appears (systemd-timesyncd: /run/systemd/timesync/synchronized)', async () => {
  const dns = await startDns(zone);
  const sink = await startSink();
  const dir = await mkdtemp(join(tmpdir(), 'moat-clock-'));
  const flag = join(dir, 'synchronized');
  const moat = await startMoat([{ port: sink.port }], { dns: { servers: [dns.server] }, health: { clockSyncFile: flag } });
  try {
    const r = await moat.monitor.check();
    assert.equal(r.state, 'degraded');
    assert.deepEqual(codes(r), ['clock-unsynchronised']);
    assert.match(r.reasons[0]!.message, /not synchronised yet/);
    await writeFile(flag, '');
    assert.equal((await moat.monitor.check()).state, 'ok');
  } finally {
    await moat.stop();
    await sink.close();
    await dns.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('a raised fault (configuration recovered, not applied) is a fault at once; status and show status carry state and reasons', async () => {
  const dns = await startDns(zone);
  const sink = await startSink();
  const m = await startStoredMoat(sink.port, { extra: { dns: { servers: [dns.server] } } });
  try {
    await m.daemon.monitor.check();
    const ctl = await m.client();
    let s = await ctl.request<{ state: string; reasons: unknown[]; transactions: number }>('status');
    assert.equal(s.state, 'ok');
    assert.deepEqual(s.reasons, []);
    assert.equal(s.transactions, 0);
    m.daemon.health.raise('config-recovered', 'the configuration was damaged; revision 1 restored');
    s = await ctl.request('status');
    assert.equal(s.state, 'fault');
    assert.deepEqual(s.reasons, [{ code: 'config-recovered', level: 'fault', message: 'the configuration was damaged; revision 1 restored' }]);
  } finally {
    await m.stop();
    await sink.close();
    await dns.close();
  }
});
