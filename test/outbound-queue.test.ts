// The outbound queue per destination domain, through the wire: an internal
// client hands moat many messages; moat delivers them to MX hosts on loopback
// (found in a real DNS server on loopback) reusing connections, never more
// than outbound.perDomainConcurrency at once to one domain, and a domain whose
// host cannot be reached neither holds up other domains nor internal delivery,
// nor is tried again for each of its queued messages.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startSink, silentServer } from './helpers/sink.ts';
import { startDns } from './helpers/dns.ts';
import { withRelay } from './helpers/moat.ts';
import { RawSmtp } from './helpers/smtp-client.ts';

/** Sends each message in its own transaction over one session from the internal network; returns the replies to the end of data. */
async function inject(port: number, messages: Array<{ from: string; to: string; body: string }>): Promise<string[]> {
  const c = await RawSmtp.open(port);
  const out: string[] = [];
  try {
    await c.reply();
    await c.cmd('EHLO client.corp.example');
    for (const m of messages) {
      assert.match(await c.cmd(`MAIL FROM:<${m.from}>`), /^250/);
      assert.match(await c.cmd(`RCPT TO:<${m.to}>`), /^250/);
      assert.match(await c.cmd('DATA'), /^354/);
      out.push(await c.cmd(`Subject: ${m.body}\r\n\r\n${m.body}\r\n.`));
    }
    await c.cmd('QUIT');
  } finally {
    c.end();
  }
  return out;
}

async function until(what: string, ok: () => boolean): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (ok()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`still waiting for ${what}`);
}

test('outbound queue: twelve messages to one slow domain go over at most two connections, never more than two at once', async () => {
  const mx = await startSink({ host: '127.0.0.81', dataDelayMs: 150 });
  const dns = await startDns({ 'busy.example': { MX: [{ exchange: 'mx.busy.example', priority: 10 }] }, 'mx.busy.example': { A: ['127.0.0.81'] } });
  try {
    await withRelay(
      {
        internal: { networks: ['127.0.0.1/32'] },
        dns: { servers: [dns.server], timeoutMs: 500 },
        outbound: { port: mx.port, perDomainConcurrency: 2, maxActive: 8, idleConnectionMs: 30_000 },
      },
      async ({ moat }) => {
        const n = 12;
        const sent = Array.from({ length: n }, (_, i) => ({ from: 'alice@example.com', to: `user${i}@busy.example`, body: `message ${i}` }));
        const replies = await inject(moat.port, sent);
        assert.ok(replies.every((r) => r.startsWith('250 ')), replies.join(' | '));
        const got = await mx.waitFor(n);
        assert.deepEqual(got.map((m) => m.to[0]).sort(), sent.map((m) => m.to).sort(), 'every message arrived once');
        assert.equal(mx.peakSessions, 2, 'two transactions at once, as perDomainConcurrency says');
        assert.ok(mx.connections <= 2, `${n} messages over ${mx.connections} connections (reused with RSET)`);
      },
    );
  } finally {
    await mx.close();
    await dns.close();
  }
});

test('outbound queue: a domain whose MX never answers takes one slot, does not delay another domain or internal delivery, and is not tried again for each queued message', async () => {
  const live = await startSink({ host: '127.0.0.83' });
  const dead = await silentServer({ host: '127.0.0.82', port: live.port });
  const dns = await startDns({
    'dead.example': { MX: [{ exchange: 'mx.dead.example', priority: 10 }] },
    'mx.dead.example': { A: ['127.0.0.82'] },
    'live.example': { MX: [{ exchange: 'mx.live.example', priority: 10 }] },
    'mx.live.example': { A: ['127.0.0.83'] },
  });
  try {
    await withRelay(
      {
        internal: { networks: ['127.0.0.1/32'] },
        dns: { servers: [dns.server], timeoutMs: 500 },
        // two outbound slots in all, one per domain: without the per-domain limit the dead domain would hold both
        outbound: { port: live.port, perDomainConcurrency: 1, maxActive: 2, connectTimeoutMs: 3000, retry: { minMs: 600_000 } },
        queue: { maxActive: 1 },
      },
      async ({ moat, sink }) => {
        const toDead = Array.from({ length: 6 }, (_, i) => ({ from: 'alice@example.com', to: `u${i}@dead.example`, body: `dead ${i}` }));
        await inject(moat.port, [...toDead, { from: 'alice@example.com', to: 'bob@live.example', body: 'live' }, { from: 'carol@example.net', to: 'dave@example.com', body: 'internal' }]);
        const [atLive] = await live.waitFor(1);
        assert.deepEqual(atLive!.to, ['bob@live.example']);
        const [inside] = await sink.waitFor(1);
        assert.deepEqual(inside!.to, ['dave@example.com'], 'internal delivery has slots of its own');
        assert.equal(dead.connections, 1, 'one transaction at a time to the dead domain');
        // the first attempt times out; the domain is closed, and its other five messages wait without a connection each
        await until('all six messages for dead.example deferred', () => moat.queue.stats().deferred === 6);
        assert.equal(dead.connections, 1, 'the other messages for the dead domain were not tried');
        assert.equal(moat.queue.stats().active, 0);
      },
    );
  } finally {
    await dead.close();
    await live.close();
    await dns.close();
  }
});

test('delay warning: one "delayed" DSN to the sender of mail that waits longer than outbound.delayWarningAfterMs, never a second, never to the null sender', async () => {
  const refusals = new Map<string, number>();
  const mx = await startSink({
    host: '127.0.0.84',
    rcpt: (a) => {
      const n = refusals.get(a) ?? 0;
      refusals.set(a, n + 1);
      return n < 4 ? { code: 451, message: '4.7.1 greylisted, come back later' } : null;
    },
  });
  const dns = await startDns({ 'slow.example': { MX: [{ exchange: 'mx.slow.example', priority: 10 }] }, 'mx.slow.example': { A: ['127.0.0.84'] } });
  try {
    await withRelay(
      {
        internal: { networks: ['127.0.0.1/32'] },
        dns: { servers: [dns.server], timeoutMs: 500 },
        outbound: { port: mx.port, retry: { minMs: 100, maxMs: 200 }, delayWarningAfterMs: 1 },
      },
      async ({ moat, sink }) => {
        await inject(moat.port, [
          { from: 'alice@example.com', to: 'frank@slow.example', body: 'from alice' },
          { from: '', to: 'grace@slow.example', body: 'a bounce' },
        ]);
        await mx.waitFor(2);
        assert.equal(refusals.get('frank@slow.example'), 5, 'four deferrals, then delivered');
        await until('the queue to empty', () => moat.queue.list(10).total === 0);
        assert.equal(sink.messages.length, 1, 'one warning in all');
        const [warning] = sink.messages;
        assert.deepEqual(warning!.to, ['alice@example.com']);
        assert.equal(warning!.from, '');
        const text = warning!.body.toString();
        assert.match(text, /^Action: delayed$/m);
        assert.match(text, /^Final-Recipient: rfc822; ?frank@slow\.example$/m);
        assert.match(text, /^Status: 4\.7\.1$/m);
        assert.match(text, /^Will-Retry-Until: /m);
        assert.match(text, /greylisted, come back later/);
        assert.ok(!text.includes('grace@slow.example'));
      },
    );
  } finally {
    await mx.close();
    await dns.close();
  }
});

test('smart host in moatd: mail for any domain goes to the relay, logged in with the password from outbound.smartHost.passwordFile; a missing file stops the start', async () => {
  const { makePki } = await import('./helpers/certs.ts');
  const { writeFile, mkdtemp, rm } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { startMoat } = await import('./helpers/moat.ts');
  const { closedPort } = await import('./helpers/sink.ts');
  const pki = makePki('relay.isp.example');
  const dir = await mkdtemp(join(tmpdir(), 'moat-smarthost-'));
  const passwordFile = join(dir, 'smarthost.pass');
  await writeFile(passwordFile, 'relay-secret-42\n', { mode: 0o600 });
  const users: string[] = [];
  const relay = await startSink({
    host: '127.0.0.95',
    server: {
      hideSTARTTLS: false,
      key: pki.key,
      cert: pki.cert,
      authOptional: false,
      onAuth(auth, _s, cb) {
        users.push(String(auth.username));
        if (auth.username === 'moat' && auth.password === 'relay-secret-42') return cb(null, { user: 'moat' });
        cb(Object.assign(new Error('5.7.8 Authentication failed'), { responseCode: 535 }));
      },
    },
  });
  const dns = await startDns({ 'relay.isp.example': { A: ['127.0.0.95'] } });
  try {
    const outbound = { smartHost: { host: 'relay.isp.example', port: relay.port, user: 'moat', passwordFile }, tls: { caFile: pki.caFile } };
    await withRelay({ internal: { networks: ['127.0.0.1/32'] }, dns: { servers: [dns.server], timeoutMs: 500 }, outbound }, async ({ moat }) => {
      await inject(moat.port, [
        { from: 'alice@example.com', to: 'x@nowhere-in-dns.example', body: 'one' },
        { from: 'alice@example.com', to: 'y@also-not.example', body: 'two' },
      ]);
      const got = await relay.waitFor(2);
      assert.deepEqual(got.map((m) => [m.to[0], m.secure]).sort(), [['x@nowhere-in-dns.example', true], ['y@also-not.example', true]]);
      assert.ok(users.length >= 1 && users.every((u) => u === 'moat'));
    });
    await assert.rejects(
      startMoat([{ port: await closedPort() }], { outbound: { ...outbound, smartHost: { ...outbound.smartHost, passwordFile: join(dir, 'missing') } } }),
      /outbound\.smartHost\.passwordFile: cannot read .*missing/,
    );
  } finally {
    await relay.close();
    await dns.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('outbound settings apply at commit: a new port is used at once for the waiting mail, without a restart or a flush; an unreadable password file refuses the commit', async () => {
  const { testConfig } = await import('./helpers/moat.ts');
  const { closedPort } = await import('./helpers/sink.ts');
  const mx = await startSink({ host: '127.0.0.85' });
  const dns = await startDns({ 'moved.example': { MX: [{ exchange: 'mx.moved.example', priority: 10 }] }, 'mx.moved.example': { A: ['127.0.0.85'] } });
  const base = { internal: { networks: ['127.0.0.1/32'] }, dns: { servers: [dns.server], timeoutMs: 500 } };
  try {
    await withRelay({ ...base, outbound: { port: await closedPort(), retry: { minMs: 600_000 } } }, async ({ moat, sink }) => {
      await inject(moat.port, [{ from: 'alice@example.com', to: 'x@moved.example', body: 'moved' }]);
      await until('the message to be deferred', () => moat.queue.stats().deferred === 1);
      const unreadable = testConfig(moat.dataDir, [{ port: sink.port }], { ...base, outbound: { port: mx.port, smartHost: { host: '127.0.0.85', user: 'moat', passwordFile: '/nonexistent/pass' } } });
      await assert.rejects(moat.prepare(unreadable), /outbound\.smartHost\.passwordFile: cannot read \/nonexistent\/pass/);
      const next = testConfig(moat.dataDir, [{ port: sink.port }], { ...base, outbound: { port: mx.port, retry: { minMs: 600_000 } } });
      const prepared = await moat.prepare(next);
      assert.deepEqual(prepared.restartNeeded, []);
      prepared.activate();
      // no "queue flush": new outbound settings end the wait of mail for the Internet by themselves
      const [m] = await mx.waitFor(1);
      assert.deepEqual(m!.to, ['x@moved.example']);
    });
  } finally {
    await mx.close();
    await dns.close();
  }
});
