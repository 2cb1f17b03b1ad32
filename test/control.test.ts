// The control socket end to end: a real moatd (in-process) with its store, real SMTP over loopback,
// a real DNS server on loopback, and the JSON-lines protocol over a real unix socket.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { stat, readdir } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { startSink, closedPort } from './helpers/sink.ts';
import { RawSmtp } from './helpers/smtp-client.ts';
import { startStoredMoat } from './helpers/control.ts';
import { startDns } from './helpers/dns.ts';
import { ControlError } from '../firmware/control/client.ts';

async function sendMail(port: number, to: string, subject = 'hello'): Promise<string> {
  const c = await RawSmtp.greeted(port);
  try {
    assert.match(await c.cmd('MAIL FROM:<alice@sender.example>'), /^250/);
    const r = await c.cmd(`RCPT TO:<${to}>`);
    if (!r.startsWith('250')) return r;
    assert.match(await c.cmd('DATA'), /^354/);
    return await c.cmd(`Subject: ${subject}\r\n\r\nbody\r\n.`);
  } finally {
    c.end();
  }
}

async function rejectsWith(p: Promise<unknown>, code: string, text?: RegExp): Promise<ControlError> {
  const e = await p.then(
    () => assert.fail('expected an error'),
    (e: unknown) => e,
  );
  assert.ok(e instanceof ControlError, String(e));
  assert.equal(e.code, code, e.message);
  if (text) assert.match(e.message, text);
  return e;
}

async function until(what: string, fn: () => Promise<boolean> | boolean, tries = 200): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`never happened: ${what}`);
}

test('a commit over the control socket applies at once; a session in flight is not dropped; a new session takes the new domain', async () => {
  const sink = await startSink();
  const m = await startStoredMoat(sink.port);
  try {
    const port = m.daemon.port;
    assert.match(await sendMail(port, 'bob@example.net'), /^554 5\.7\.1/, 'example.net is not local yet');
    // a session that is open during the commit
    const open = await RawSmtp.greeted(port);
    assert.match(await open.cmd('MAIL FROM:<alice@sender.example>'), /^250/);

    const ctl = await m.client();
    await ctl.request('config.set', { path: 'inbound.localDomains', value: ['example.com', 'example.net'] });
    const diff = await ctl.request<{ lines: string[] }>('config.compare');
    assert.deepEqual(diff.lines, ['+ inbound.localDomains[1]: "example.net"']);
    const before = m.store.runningRevision!;
    const r = await ctl.request<{ revision: number }>('config.commit', { user: 'admin' });
    assert.equal(r.revision, before + 1);
    assert.equal(m.store.runningRevision, r.revision);
    assert.equal(m.daemon.port, port, 'the listener was not rebound');

    // the open session goes on and delivers
    assert.match(await open.cmd('RCPT TO:<bob@example.com>'), /^250/);
    assert.match(await open.cmd('DATA'), /^354/);
    assert.match(await open.cmd('Subject: in flight\r\n\r\nbody\r\n.'), /^250 2\.0\.0 Ok: queued as/);
    assert.match(await open.cmd('QUIT'), /^221/);
    // a new session accepts the new domain
    assert.match(await sendMail(port, 'bob@example.net', 'new domain'), /^250 2\.0\.0 Ok: queued as/);
    const got = await sink.waitFor(2);
    assert.deepEqual(got.map((x) => x.to[0]).sort(), ['bob@example.com', 'bob@example.net']);

    // rollback 1 undoes it
    await ctl.request('config.rollback', { back: 1 });
    assert.match(await sendMail(port, 'carol@example.net'), /^554 5\.7\.1/);
    const status = await ctl.request<{ config: { revision: number }; localDomains: string[] }>('status');
    assert.deepEqual(status.localDomains, ['example.com']);
    assert.equal(status.config.revision, before + 2);
  } finally {
    await m.stop();
    await sink.close();
  }
});

test('a commit does not lift a temporary block: the policy keeps its memory of clients across configurations', async () => {
  const sink = await startSink();
  const m = await startStoredMoat(sink.port);
  try {
    const port = m.daemon.port;
    const ctl = await m.client();
    await ctl.request('config.set', { path: 'policy.blocks.relayAttempts', value: 2 });
    await ctl.request('config.commit');
    const c = await RawSmtp.greeted(port);
    assert.match(await c.cmd('MAIL FROM:<alice@sender.example>'), /^250/);
    assert.match(await c.cmd('RCPT TO:<a@elsewhere.example>'), /^554 5\.7\.1/);
    assert.match(await c.cmd('RCPT TO:<b@elsewhere.example>'), /^421 4\.7\.0 Too many relay attempts/);
    c.end();
    const blocked = await RawSmtp.open(port);
    assert.match(await blocked.reply(), /^421 4\.7\.0 Your address is temporarily blocked/);
    blocked.end();
    // any commit builds a new policy for new sessions
    await ctl.request('config.set', { path: 'inbound.localDomains', value: ['example.com', 'example.net'] });
    await ctl.request('config.commit');
    const again = await RawSmtp.open(port);
    assert.match(await again.reply(), /^421 4\.7\.0 Your address is temporarily blocked/, 'still blocked after the commit');
    again.end();
  } finally {
    await m.stop();
    await sink.close();
  }
});

test('a change of inbound.listen rebinds the listener; sessions on the old address finish', async () => {
  const sink = await startSink();
  const m = await startStoredMoat(sink.port);
  try {
    const oldPort = m.daemon.port;
    const open = await RawSmtp.greeted(oldPort);
    const free = await closedPort();
    const ctl = await m.client();
    await ctl.request('config.set', { path: 'inbound.listen', value: `127.0.0.1:${free}` });
    await ctl.request('config.commit');
    assert.equal(m.daemon.port, free);
    assert.match(await sendMail(free, 'bob@example.com'), /^250/);
    assert.match(await open.cmd('MAIL FROM:<a@sender.example>'), /^250/, 'the old session still works');
    open.end();
    await assert.rejects(RawSmtp.open(oldPort), /ECONNREFUSED/, 'nothing listens on the old address');
    // a listen address that cannot be bound is refused before anything is written
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
    const busy = (blocker.address() as net.AddressInfo).port;
    const revs = m.store.revisions().length;
    await ctl.request('config.set', { path: 'inbound.listen', value: `127.0.0.1:${busy}` });
    await rejectsWith(ctl.request('config.commit'), 'failed', /cannot listen on 127\.0\.0\.1:\d+: .*EADDRINUSE/);
    assert.equal(m.store.revisions().length, revs, 'nothing committed');
    assert.equal(m.daemon.port, free);
    blocker.close();
  } finally {
    await m.stop();
    await sink.close();
  }
});

test('bad requests get clear errors; an oversized request closes the connection; the socket is 0660', async () => {
  const sink = await startSink();
  const m = await startStoredMoat(sink.port);
  try {
    assert.equal((await stat(m.socket)).mode & 0o777, 0o660);
    const ctl = await m.client();
    await rejectsWith(ctl.request('no.such'), 'unknown-command', /unknown command "no\.such"/);
    await rejectsWith(ctl.request('config.set', { path: 'inbound.maxMessageSize', value: 'big' }), 'invalid-config', /inbound\.maxMessageSize: expected a number of bytes, got "big"/);
    await rejectsWith(ctl.request('config.set', { path: 'inbound.nonsense', value: 1 }), 'not-found', /unknown setting inbound\.nonsense/);
    await rejectsWith(ctl.request('config.set', { path: 'inbound..x', value: 1 }), 'not-found', /bad setting path/);
    await rejectsWith(ctl.request('config.set', { path: '__proto__.x', value: 1 }), 'not-found', /bad setting path "__proto__\.x"/);
    await rejectsWith(ctl.request('queue.hold', { id: 'NOPE' }), 'not-found', /no queued message NOPE/);
    await rejectsWith(ctl.request('queue.list', { limit: 5000 }), 'bad-request', /limit: expected a whole number from 1 to 1000/);
    await rejectsWith(ctl.request('config.confirm'), 'not-found', /no commit is waiting/);
    // a candidate that is invalid as a whole is refused at commit, and nothing is written
    await ctl.request('config.delete', { path: 'internal.servers[0]' });
    const revs = m.store.revisions().length;
    await rejectsWith(ctl.request('config.commit'), 'invalid-config', /internal\.servers: name at least one internal server/);
    assert.equal(m.store.revisions().length, revs);
    await ctl.request('config.discard');
    assert.deepEqual((await ctl.request<{ lines: string[] }>('config.compare')).lines, []);

    // raw protocol: wrong version, not JSON, and a request over 64 KiB
    const raw = net.connect(m.socket);
    let got = '';
    raw.on('data', (d) => (got += d));
    const closed = new Promise((r) => raw.once('close', r));
    raw.write('{"v":2,"id":1,"cmd":"status"}\nnot json\n');
    await until('two answers', () => got.split('\n').length >= 3);
    // a read-only command may be answered before an earlier one: match by id
    const answers = got.split('\n').filter(Boolean).map((l) => JSON.parse(l));
    const a = answers.find((x) => x.id === 1);
    const b = answers.find((x) => x.id === null);
    assert.equal(a.error.code, 'unsupported-version');
    assert.equal(b.error.code, 'bad-request');
    raw.write('{"v":1,"id":2,"cmd":"status","args":{"x":"' + 'a'.repeat(70 * 1024));
    await closed;
    assert.match(got.trim().split('\n').at(-1)!, /"code":"too-large"/);
    // the server is still fine
    assert.equal((await ctl.request<{ health: string }>('status')).health, 'ok');
  } finally {
    await m.stop();
    await sink.close();
  }
});

test('each control connection has its own candidate; the password hash is never shown', async () => {
  const sink = await startSink();
  const m = await startStoredMoat(sink.port, { extra: { admin: { passwordHash: 'scrypt$16384$8$1$c2FsdA==$aGFzaA==', mustChangePassword: false } } });
  try {
    const a = await m.client();
    const b = await m.client();
    await a.request('config.set', { path: 'inbound.maxRecipients', value: 7 });
    assert.equal((await a.request<{ value: unknown }>('config.get', { path: 'inbound.maxRecipients', candidate: true })).value, 7);
    assert.equal((await b.request<{ value: unknown }>('config.get', { path: 'inbound.maxRecipients', candidate: true })).value, null);
    assert.deepEqual((await b.request<{ lines: string[] }>('config.compare')).lines, []);
    const all = await a.request<{ value: { admin: { passwordHash: string } } }>('config.get');
    assert.equal(all.value.admin.passwordHash, '[secret]');
    await a.request('config.set', { path: 'admin.passwordHash', value: 'scrypt$16384$8$1$c2FsdDI=$aGFzaDI=' });
    const lines = (await a.request<{ lines: string[] }>('config.compare')).lines;
    assert.ok(lines.includes('~ admin.passwordHash: "[secret]" → "[secret] (changed)"'), lines.join('\n'));
    assert.ok(!lines.join('\n').includes('aGFzaD'), 'no hash in the output');
    await a.request('config.commit');
    assert.ok(!m.ring.tail(1000).join('\n').includes('aGFzaD'), 'no hash in the log');
  } finally {
    await m.stop();
    await sink.close();
  }
});

test('commit confirmed rolls back by itself when not confirmed, even after the client went away', async () => {
  const sink = await startSink();
  const m = await startStoredMoat(sink.port);
  try {
    const port = m.daemon.port;
    let ctl = await m.client();
    const start = m.store.runningRevision!;
    await ctl.request('config.set', { path: 'inbound.localDomains', value: ['example.com', 'example.net'] });
    const r = await ctl.request<{ revision: number; rollbackTo: number }>('config.commit', { confirmMs: 300 });
    assert.equal(r.rollbackTo, start);
    assert.match(await sendMail(port, 'bob@example.net'), /^250/);
    ctl.close();
    await until('the unconfirmed commit is rolled back', () => m.store.runningRevision === r.revision + 1);
    assert.deepEqual(m.daemon.config.inbound.localDomains, ['example.com']);
    assert.match(await sendMail(port, 'bob@example.net'), /^554 5\.7\.1/);
    // a confirmed one stays
    ctl = await m.client();
    await ctl.request('config.set', { path: 'inbound.localDomains', value: ['example.com', 'example.org'] });
    const c = await ctl.request<{ revision: number }>('config.commit', { confirmMs: 300 });
    await ctl.request('config.confirm');
    const ok = await ctl.request<{ config: { revision: number; confirmBy?: string } }>('status');
    assert.equal(ok.config.revision, c.revision);
    assert.equal(ok.config.confirmBy, undefined);
    // the confirmation window is over when a further commit is made (it confirms the previous one)
    await ctl.request('config.set', { path: 'inbound.maxRecipients', value: 50 });
    const d = await ctl.request<{ revision: number }>('config.commit');
    assert.equal(m.store.runningRevision, d.revision);
  } finally {
    await m.stop();
    await sink.close();
  }
});

test('queue hold keeps a message from delivery across a restart; release delivers it; delete removes it', async () => {
  const port = await closedPort(); // the internal server is down at first
  let m = await startStoredMoat(port, { keep: true });
  const dir = m.dir;
  let sink: Awaited<ReturnType<typeof startSink>> | null = null;
  try {
    assert.match(await sendMail(m.daemon.port, 'held@example.com', 'held'), /^250/);
    assert.match(await sendMail(m.daemon.port, 'gone@example.com', 'gone'), /^250/);
    let ctl = await m.client();
    const list = await ctl.request<{ total: number; messages: Array<{ id: string; to: string[]; state: string }> }>('queue.list');
    assert.equal(list.total, 2);
    const held = list.messages.find((x) => x.to[0] === 'held@example.com')!;
    const gone = list.messages.find((x) => x.to[0] === 'gone@example.com')!;
    await ctl.request('queue.hold', { id: held.id });
    await rejectsWith(ctl.request('queue.release', { id: gone.id }), 'not-found', /is not on hold/);
    await until('the other message is not being delivered', async () => (await ctl.request<{ queue: { active: number } }>('status')).queue.active === 0);
    await ctl.request('queue.delete', { id: gone.id });
    await m.stop();

    // restart with the same files: the hold is still there
    m = await startStoredMoat(port, { dir, keep: true });
    sink = await startSink({ port });
    ctl = await m.client();
    const after = await ctl.request<{ total: number; messages: Array<{ id: string; state: string }> }>('queue.list');
    assert.deepEqual(
      after.messages.map((x) => [x.id, x.state]),
      [[held.id, 'held']],
      'the held message survived the restart; the deleted one is gone',
    );
    // a flush and a fresh message go through; the held one does not
    await ctl.request('queue.flush');
    assert.match(await sendMail(m.daemon.port, 'fresh@example.com', 'fresh'), /^250/);
    await sink.waitFor(1);
    assert.deepEqual(sink.messages.map((x) => x.to[0]), ['fresh@example.com']);
    await ctl.request('queue.release', { id: held.id });
    const two = await sink.waitFor(2);
    assert.deepEqual(two.map((x) => x.to[0]), ['fresh@example.com', 'held@example.com']);
    assert.ok(!sink.messages.some((x) => x.to[0] === 'gone@example.com'));
  } finally {
    await m.stop();
    await sink?.close();
    const { rm } = await import('node:fs/promises');
    await rm(dir, { recursive: true, force: true });
  }
});

test('log tail, test delivery through the queue, and an MX lookup against a DNS server on loopback', async () => {
  const sink = await startSink();
  const dns = await startDns({ 'example.net': { MX: [{ exchange: 'mx2.example.net', priority: 20 }, { exchange: 'mx1.example.net', priority: 10 }] } });
  const m = await startStoredMoat(sink.port, { daemon: { dnsServers: [dns.server] } });
  try {
    const ctl = await m.client();
    const t = await ctl.request<{ queueId: string }>('test.delivery', { to: 'postmaster@example.com' });
    const [msg] = await sink.waitFor(1);
    assert.deepEqual(msg!.to, ['postmaster@example.com']);
    assert.equal(msg!.from, '');
    assert.match(msg!.body.toString(), /Subject: moat test message/);
    await rejectsWith(ctl.request('test.delivery', { to: 'a@b@c' }), 'bad-request', /not a plain address/);
    await rejectsWith(ctl.request('test.delivery', {}), 'bad-request', /to: expected a string/);

    const mx = await ctl.request<{ mx: Array<{ exchange: string; priority: number }> }>('dns.mx', { domain: 'Example.NET.' });
    assert.deepEqual(mx.mx, [
      { exchange: 'mx1.example.net', priority: 10 },
      { exchange: 'mx2.example.net', priority: 20 },
    ]);
    assert.ok(dns.asked.includes('MX example.net'));
    const none = await ctl.request<{ mx: unknown[]; note: string }>('dns.mx', { domain: 'nowhere.test' });
    assert.deepEqual(none.mx, []);
    assert.equal(none.note, 'no such domain');
    await rejectsWith(ctl.request('dns.mx', { domain: 'bad domain!' }), 'bad-request', /not a domain name/);

    const tail = await ctl.request<{ lines: string[] }>('log.tail', { lines: 1000 });
    assert.ok(tail.lines.some((l) => l.includes('"ev":"test-delivery"') && l.includes(t.queueId)));
    assert.ok(tail.lines.some((l) => l.includes('"ev":"delivered"')));
    assert.equal((await ctl.request<{ lines: string[] }>('log.tail', { lines: 1 })).lines.length, 1);
  } finally {
    await m.stop();
    await sink.close();
    await dns.close();
  }
});

test('status reports the store, the queue and no faults; revisions are listed', async () => {
  const sink = await startSink();
  const m = await startStoredMoat(sink.port);
  try {
    const ctl = await m.client();
    const s = await ctl.request<{ health: string; faults: unknown[]; queue: { total: number }; config: { revision: number } }>('status');
    assert.equal(s.health, 'ok');
    assert.deepEqual(s.faults, []);
    assert.equal(s.queue.total, 0);
    const revs = await ctl.request<{ running: number; revisions: Array<{ revision: number; ok: boolean }> }>('config.revisions');
    assert.equal(revs.running, s.config.revision);
    assert.ok(revs.revisions.every((r) => r.ok));
    assert.ok((await readdir(join(m.dir, 'config.json.d'))).length >= 1);
  } finally {
    await m.stop();
    await sink.close();
  }
});

test('a commit writes the network files under network.filesRoot; factory-reset commits the factory document', async () => {
  const sink = await startSink();
  const { mkdtemp, readFile: rf, rm } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const root = await mkdtemp(join(tmpdir(), 'moat-os-'));
  const factory = { hostname: 'factory.example.com', inbound: { listen: '127.0.0.1:0', localDomains: ['factory.example'] }, internal: { servers: [{ host: '127.0.0.1', port: sink.port, tls: 'none' }] }, storage: { dataDir: '/unused' } };
  const m = await startStoredMoat(sink.port, { extra: { network: { filesRoot: root } }, daemon: { factory } });
  try {
    assert.match(await rf(join(root, 'etc/systemd/network/10-moat.network'), 'utf8'), /DHCP=yes/, 'written at start');
    const ctl = await m.client();
    await ctl.request('config.set', { path: 'network', value: { mode: 'static', address: '192.0.2.10', prefix: 24, gateway: '192.0.2.1', dnsServers: ['192.0.2.53'], filesRoot: root } });
    await ctl.request('config.commit');
    await until('the network unit is rewritten', async () => (await rf(join(root, 'etc/systemd/network/10-moat.network'), 'utf8')).includes('Address=192.0.2.10/24'));
    // resolv.conf is written after the network unit, each synced: wait for it too
    await until('resolv.conf is rewritten', async () => (await rf(join(root, 'etc/resolv.conf'), 'utf8').catch(() => '')).includes('192.0.2.53'));
    assert.equal(await rf(join(root, 'etc/resolv.conf'), 'utf8').then((t) => t.split('\n').filter((l) => l.startsWith('nameserver')).join()), 'nameserver 192.0.2.53');
    // a storage change is committed but waits for a restart, and says so
    await ctl.request('config.set', { path: 'storage.minFreeBytes', value: 2 * 1024 * 1024 });
    const r = await ctl.request<{ restartNeeded: string[] }>('config.commit');
    assert.deepEqual(r.restartNeeded, ['storage.minFreeBytes']);

    const f = await ctl.request<{ revision: number }>('system.factoryReset');
    assert.equal(m.store.runningRevision, f.revision);
    assert.deepEqual(m.daemon.config.inbound.localDomains, ['factory.example']);
    assert.equal((await m.store.revisions()).at(-1)!.comment, 'factory reset');
  } finally {
    await m.stop();
    await sink.close();
    await rm(root, { recursive: true, force: true });
  }
});

test('at most 8 control connections; the ninth is told so', async () => {
  const sink = await startSink();
  const m = await startStoredMoat(sink.port);
  try {
    const eight = await Promise.all(Array.from({ length: 8 }, () => m.client()));
    await Promise.all(eight.map((c) => c.request('status')));
    const ninth = await m.client();
    await rejectsWith(ninth.request('status'), 'busy', /too many control connections \(8\)/);
    eight[0]!.close();
    await until('a slot is free again', async () => {
      const c = await m.client();
      return c.request('status').then(
        () => true,
        () => false,
      );
    });
  } finally {
    await m.stop();
    await sink.close();
  }
});

test('without a factory document, factory-reset is refused', async () => {
  const sink = await startSink();
  const m = await startStoredMoat(sink.port);
  try {
    const ctl = await m.client();
    await rejectsWith(ctl.request('system.factoryReset'), 'not-found', /no factory configuration/);
  } finally {
    await m.stop();
    await sink.close();
  }
});


test('a client that sends requests faster than it reads answers is paused, and loses nothing', async () => {
  const sink = await startSink();
  const m = await startStoredMoat(sink.port);
  try {
    const raw = net.connect(m.socket);
    await new Promise((r) => raw.once('connect', r));
    raw.pause(); // never reads while sending
    let sent = 0;
    let stalled = false;
    for (let batch = 0; batch < 400 && !stalled; batch++) {
      let chunk = '';
      for (let i = 0; i < 500; i++) chunk += JSON.stringify({ v: 1, id: ++sent, cmd: 'status' }) + '\n';
      raw.write(chunk);
      await new Promise((r) => setTimeout(r, 2));
      stalled = raw.writableLength > 1024 * 1024;
    }
    assert.ok(stalled, `moatd kept reading (${sent} requests sent, ${raw.writableLength} bytes waiting)`);
    // another client is still served meanwhile
    const other = await m.client();
    assert.equal((await other.request<{ health: string }>('status')).health, 'ok');
    // now read: every request gets its answer, in order
    let buf = '';
    let next = 1;
    raw.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const r = JSON.parse(buf.slice(0, i));
        buf = buf.slice(i + 1);
        assert.equal(r.id, next++);
        assert.equal(r.ok, true);
      }
    });
    raw.resume();
    await until('every answer arrived', () => next === sent + 1, 2000);
    raw.destroy();
  } finally {
    await m.stop();
    await sink.close();
  }
});
