// Outbound by MX, through the wire: an internal client (internal.networks)
// relays to other domains; moat finds the MX hosts in a real DNS server on
// loopback and delivers to SMTP servers on loopback addresses (127.0.0.x), in
// preference order with fallback; final failures come back to the internal
// sender as DSNs naming the recipient and the remote reply. Outside clients
// still cannot relay.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startSink, type Sink } from './helpers/sink.ts';
import { startDns } from './helpers/dns.ts';
import { withRelay } from './helpers/moat.ts';
import { RawSmtp } from './helpers/smtp-client.ts';

async function send(port: number, from: string, to: string[], body: string, localAddress = '127.0.0.1'): Promise<string[]> {
  const c = await RawSmtp.open(port, '127.0.0.1', localAddress);
  const replies: string[] = [];
  try {
    await c.reply();
    await c.cmd('EHLO client.corp.example');
    replies.push(await c.cmd(`MAIL FROM:<${from}>`));
    for (const t of to) replies.push(await c.cmd(`RCPT TO:<${t}>`));
    if (replies.slice(1).some((r) => r.startsWith('250'))) {
      await c.cmd('DATA');
      replies.push(await c.cmd(`Subject: out\r\n\r\n${body}\r\n.`));
    }
    await c.cmd('QUIT');
  } finally {
    c.end();
  }
  return replies;
}

test('outbound by MX: preference order with fallback, implicit MX, null MX refused at RCPT, remote 5xx as a DSN, outside clients refused', async () => {
  // the MX hosts listen on one port at different loopback addresses
  const mx2 = await startSink({ host: '127.0.0.62' });
  const port = mx2.port;
  const others: Sink[] = [
    await startSink({ host: '127.0.0.63', port }),
    await startSink({ host: '127.0.0.64', port, rcpt: (a) => (a.startsWith('nobody@') ? { code: 550, message: '5.1.1 nobody here' } : null) }),
  ];
  const [implicitHost, strictHost] = others as [Sink, Sink];
  const dns = await startDns({
    'remote.example': { MX: [{ exchange: 'mx2.remote.example', priority: 20 }, { exchange: 'mx1.remote.example', priority: 10 }] },
    'mx1.remote.example': { A: ['127.0.0.61'] }, // nothing listens there: refused, next MX
    'mx2.remote.example': { A: ['127.0.0.62'] },
    'implicit.example': { A: ['127.0.0.63'] },
    'nomail.example': { MX: [{ exchange: '.', priority: 0 }] },
    'strict.example': { MX: [{ exchange: 'mx.strict.example', priority: 10 }] },
    'mx.strict.example': { A: ['127.0.0.64'] },
  });
  try {
    await withRelay(
      { internal: { networks: ['127.0.0.1/32'] }, dns: { servers: [dns.server], timeoutMs: 500 }, outbound: { port, connectTimeoutMs: 1000 } },
      async ({ moat, sink }) => {
        // an outside client may not relay outward
        const outside = await send(moat.port, 'mallory@sender.example', ['x@remote.example'], 'no', '127.0.0.2');
        assert.match(outside[1]!, /^554 5\.7\.1 Relay rejected for policy reasons/);
        // an internal one may
        const r = await send(moat.port, 'alice@example.com', ['bob@remote.example', 'carol@implicit.example', 'dave@nomail.example', 'nobody@strict.example', 'erin@strict.example'], 'hello world');
        // dave@nomail.example: a null MX is refused at RCPT (RFC 7505), the others accepted
        assert.match(r[3]!, /^556 5\.1\.10 /);
        assert.ok([1, 2, 4, 5].every((i) => r[i]!.startsWith('250')), r.join(' | '));
        assert.match(r[6]!, /^250 2\.0\.0 Ok: queued as/);
        const [atMx2] = await mx2.waitFor(1);
        assert.deepEqual(atMx2!.to, ['bob@remote.example'], 'the secondary MX got it after the primary refused');
        // topology hiding: no Received trail (moat's own names the internal client) leaves
        const head = atMx2!.body.toString().split('\r\n\r\n')[0]!;
        assert.ok(!/^Received:/im.test(head), head);
        assert.match(head, /^Subject: out$/m);
        const [atImplicit] = await implicitHost.waitFor(1);
        assert.deepEqual(atImplicit!.to, ['carol@implicit.example'], 'no MX: the domain itself');
        const [atStrict] = await strictHost.waitFor(1);
        assert.deepEqual(atStrict!.to, ['erin@strict.example'], 'the recipient the remote accepted');
        // DSNs for the null MX and the remote 5xx reach the internal sender
        const dsns = await sink.waitFor(1, 20_000);
        const text = dsns.map((d) => d.body.toString()).join('\n');
        assert.deepEqual(dsns[0]!.to, ['alice@example.com']);
        assert.ok(!text.includes('dave@nomail.example'), 'refused at RCPT, so no DSN');
        assert.match(text, /nobody@strict\.example/);
        assert.match(text, /550 5\.1\.1 nobody here/);
        assert.ok(!text.includes('bob@remote.example') || !/Final-Recipient: rfc822;\s*bob@remote/i.test(text), 'no DSN for delivered mail');
      },
    );
  } finally {
    await mx2.close();
    for (const s of others) await s.close();
    await dns.close();
  }
});

test('outbound: a 4xx from the only MX host defers, and a later retry delivers', async () => {
  let refusals = 1;
  const mx = await startSink({ host: '127.0.0.65', rcpt: () => (refusals-- > 0 ? { code: 451, message: '4.7.1 try again later' } : null) });
  const dns = await startDns({ 'later.example': { MX: [{ exchange: 'mx.later.example', priority: 10 }] }, 'mx.later.example': { A: ['127.0.0.65'] } });
  try {
    await withRelay(
      { internal: { networks: ['127.0.0.0/30'] }, dns: { servers: [dns.server], timeoutMs: 500 }, outbound: { port: mx.port, retry: { minMs: 200, maxMs: 400 } } },
      async ({ moat }) => {
        const r = await send(moat.port, 'alice@example.com', ['frank@later.example'], 'retry me');
        assert.match(r.at(-1)!, /^250 /);
        const [m] = await mx.waitFor(1, 20_000);
        assert.deepEqual(m!.to, ['frank@later.example']);
        assert.ok(m!.body.toString().includes('retry me'));
      },
    );
  } finally {
    await mx.close();
    await dns.close();
  }
});

test('outbound DKIM: mail from a signing domain leaves signed, and the signature verifies against the published key', async () => {
  const { generateKeyPairSync } = await import('node:crypto');
  const { mkdtemp, writeFile, rm } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { dkimVerify } = await import('mailauth/lib/dkim/verify.js');
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pub = (publicKey.export({ type: 'spki', format: 'der' }) as Buffer).toString('base64');
  const dir = await mkdtemp(join(tmpdir(), 'moat-dkim-'));
  const keyFile = join(dir, 'example.com.pem');
  await writeFile(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
  const mx = await startSink({ host: '127.0.0.66' });
  const dns = await startDns({
    'signed.example': { MX: [{ exchange: 'mx.signed.example', priority: 10 }] },
    'mx.signed.example': { A: ['127.0.0.66'] },
    'mail2026._domainkey.example.com': { TXT: [`v=DKIM1; k=rsa; p=${pub}`] },
  });
  try {
    await withRelay(
      {
        internal: { networks: ['127.0.0.1'] },
        dns: { servers: [dns.server], timeoutMs: 500 },
        outbound: { port: mx.port, dkim: [{ domain: 'example.com', selector: 'mail2026', keyFile }] },
      },
      async ({ moat }) => {
        const c = await RawSmtp.open(moat.port);
        await c.reply();
        await c.cmd('EHLO client.corp.example');
        assert.match(await c.cmd('MAIL FROM:<alice@example.com>'), /^250/);
        assert.match(await c.cmd('RCPT TO:<bob@signed.example>'), /^250/);
        assert.match(await c.cmd('DATA'), /^354/);
        assert.match(await c.cmd('From: Alice <alice@example.com>\r\nTo: bob@signed.example\r\nSubject: signed\r\n\r\nsigned body\r\n.'), /^250 /);
        c.end();
        const [m] = await mx.waitFor(1);
        assert.match(m!.body.toString(), /^DKIM-Signature: .*d=example\.com/s);
        const resolver = async (name: string, type: string) => {
          const { DnsResolver } = await import('../firmware/dns/resolver.ts');
          return new DnsResolver({ servers: [dns.server], timeoutMs: 500, cacheEntries: 10, maxTtlMs: 1000, negativeTtlMs: 1000 }).resolve(name, type);
        };
        const v = await dkimVerify(m!.body, { resolver } as never);
        assert.equal(v.results[0]?.status?.result, 'pass', JSON.stringify(v.results[0]?.status));
      },
    );
  } finally {
    await mx.close();
    await dns.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('SMTP AUTH: an outside client relays outward only after STARTTLS and a good password; wrong ones are refused', async () => {
  const { makePki } = await import('./helpers/certs.ts');
  const { hashPassword } = await import('../firmware/console/auth.ts');
  const nodemailer = (await import('nodemailer')).default;
  const pki = makePki('mx.example.com');
  const mx = await startSink({ host: '127.0.0.67' });
  const dns = await startDns({ 'auth.example': { MX: [{ exchange: 'mx.auth.example', priority: 10 }] }, 'mx.auth.example': { A: ['127.0.0.67'] } });
  const passwordHash = await hashPassword('roaming-laptop-secret');
  try {
    await withRelay(
      {
        inbound: { tls: { certFile: pki.certFile, keyFile: pki.keyFile } },
        dns: { servers: [dns.server], timeoutMs: 500 },
        outbound: { port: mx.port, users: [{ name: 'laptop', passwordHash }] },
      },
      async ({ moat }) => {
        const transport = (auth?: { user: string; pass: string }, ignoreTLS = false) =>
          nodemailer.createTransport({ host: '127.0.0.1', port: moat.port, localAddress: '127.0.0.2', name: 'laptop.example.net', secure: false, ignoreTLS, requireTLS: !ignoreTLS, tls: { ca: pki.ca, servername: 'mx.example.com' }, ...(auth ? { auth } : {}) });
        const attempt = async (t: ReturnType<typeof transport>) => {
          try {
            return (await t.sendMail({ envelope: { from: 'carol@example.com', to: ['grace@auth.example'] }, raw: 'Subject: from the road\r\n\r\nhi\r\n' })).response;
          } catch (e) {
            return (e as { response?: string; message: string }).response ?? (e as Error).message;
          } finally {
            t.close();
          }
        };
        assert.match(await attempt(transport()), /^554 5\.7\.1 Relay rejected/, 'no AUTH, no relay');
        assert.match(await attempt(transport({ user: 'laptop', pass: 'wrong-password' })), /^535 5\.7\.8 /);
        assert.match(await attempt(transport({ user: 'nobody', pass: 'roaming-laptop-secret' })), /^535 5\.7\.8 /);
        // AUTH before STARTTLS is refused by the server itself
        const raw = await RawSmtp.open(moat.port, '127.0.0.1', '127.0.0.2');
        await raw.reply();
        await raw.cmd('EHLO laptop.example.net');
        assert.match(await raw.cmd(`AUTH PLAIN ${Buffer.from('\0laptop\0roaming-laptop-secret').toString('base64')}`), /^538 /);
        raw.end();
        assert.match(await attempt(transport({ user: 'laptop', pass: 'roaming-laptop-secret' })), /^250 2\.0\.0 /);
        const [m] = await mx.waitFor(1);
        assert.deepEqual(m!.to, ['grace@auth.example']);
      },
    );
  } finally {
    await mx.close();
    await dns.close();
  }
});

test('SMTP AUTH: the third wrong password in one session closes it with 421 4.7.0', async () => {
  const { makePki } = await import('./helpers/certs.ts');
  const { hashPassword } = await import('../firmware/console/auth.ts');
  const tls = await import('node:tls');
  const net = await import('node:net');
  const pki = makePki('mx.example.com');
  const passwordHash = await hashPassword('roaming-laptop-secret');
  await withRelay({ inbound: { tls: { certFile: pki.certFile, keyFile: pki.keyFile } }, outbound: { users: [{ name: 'laptop', passwordHash }] } }, async ({ moat }) => {
    const plain = net.connect({ port: moat.port, host: '127.0.0.1', localAddress: '127.0.0.2' });
    let buf = '';
    let closed = false;
    let sock: import('node:net').Socket = plain;
    const onData = (d: Buffer) => (buf += d.toString('latin1'));
    plain.on('data', onData);
    const reply = async (): Promise<string> => {
      for (let i = 0; i < 400; i++) {
        const m = /^(?:\d{3}-[^\r\n]*\r\n)*\d{3}(?: [^\r\n]*)?\r\n/.exec(buf);
        if (m) {
          buf = buf.slice(m[0].length);
          return m[0].trimEnd();
        }
        if (closed) throw new Error('closed');
        await new Promise((r) => setTimeout(r, 25));
      }
      throw new Error(`no reply: ${buf}`);
    };
    const cmd = async (line: string) => {
      sock.write(line + '\r\n');
      return reply();
    };
    await reply();
    await cmd('EHLO laptop.example.net');
    assert.match(await cmd('STARTTLS'), /^220/);
    plain.off('data', onData);
    sock = tls.connect({ socket: plain, ca: pki.ca, servername: 'mx.example.com' });
    await new Promise((r) => sock.once('secureConnect', r));
    sock.on('data', onData);
    sock.on('close', () => (closed = true));
    await cmd('EHLO laptop.example.net');
    const bad = `AUTH PLAIN ${Buffer.from('\0laptop\0not-the-password').toString('base64')}`;
    assert.match(await cmd(bad), /^535 5\.7\.8 /);
    assert.match(await cmd(bad), /^535 5\.7\.8 /);
    assert.match(await cmd(bad), /^421 4\.7\.0 Too many failed authentications/);
    for (let i = 0; i < 200 && !closed; i++) await new Promise((r) => setTimeout(r, 25));
    assert.equal(closed, true, 'the session was closed');
  });
});

test('a DKIM key file that cannot be read stops the start with a message naming the setting and the file', async () => {
  const { startMoat } = await import('./helpers/moat.ts');
  const { closedPort } = await import('./helpers/sink.ts');
  await assert.rejects(
    startMoat([{ port: await closedPort() }], { outbound: { dkim: [{ domain: 'example.com', selector: 's1', keyFile: '/nonexistent/example.com.pem' }] } }),
    /outbound\.dkim: cannot read key file \/nonexistent\/example\.com\.pem/,
  );
});

test('moat-ctl hash-password: a password from standard input becomes a hash outbound.users accepts; a short one is refused', async () => {
  const { spawn } = await import('node:child_process');
  const { join } = await import('node:path');
  const { verifyPassword } = await import('../firmware/console/auth.ts');
  const { parseConfig } = await import('../firmware/config/schema.ts');
  const ctl = join(import.meta.dirname, '..', 'dist', 'moat-ctl.js');
  const run = (input: string) =>
    new Promise<{ code: number; out: string; err: string }>((resolve) => {
      const child = spawn(process.execPath, [ctl, 'hash-password'], { stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => (out += d));
      child.stderr.on('data', (d: Buffer) => (err += d));
      child.once('exit', (code) => resolve({ code: code ?? -1, out, err }));
      child.stdin.end(input);
    });
  const ok = await run('roaming-laptop-secret\n');
  assert.equal(ok.code, 0, ok.err);
  const hash = ok.out.trim();
  assert.equal(await verifyPassword('roaming-laptop-secret', hash), true);
  assert.ok(!ok.out.includes('roaming-laptop-secret'), 'the password is not echoed');
  parseConfig({
    hostname: 'mx.example.com',
    inbound: { localDomains: ['example.com'] },
    internal: { servers: [{ host: '10.0.0.5' }] },
    storage: { dataDir: '/var/lib/moat' },
    outbound: { users: [{ name: 'laptop', passwordHash: hash }] },
  });
  const short = await run('short\n');
  assert.equal(short.code, 1);
  assert.match(short.err, /hash-password: at least 8 characters/);
});
