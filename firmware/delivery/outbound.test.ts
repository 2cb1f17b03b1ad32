// Outbound delivery on its own, through the wire: TLS policy per destination
// domain against SMTP servers on loopback with certificates from a throw-away
// CA, and the smart host with AUTH. MX records come from a real DNS server on
// loopback; the log lines are read back to see what they say about TLS.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { OutboundDelivery, type OutboundOptions } from './outbound.ts';
import { DnsResolver } from '../dns/resolver.ts';
import { createLogger } from '../log/logger.ts';
import { startSink } from '../../test/helpers/sink.ts';
import { startDns } from '../../test/helpers/dns.ts';
import { makePki } from '../../test/helpers/certs.ts';
import type { SMTPServerOptions } from 'smtp-server';

const BODY = Buffer.from('From: alice@example.com\r\nSubject: out\r\n\r\nhello\r\n');

function job(to: string[], id = '0000000000010000') {
  return { id, from: 'alice@example.com', to, size: BODY.length, open: () => Readable.from([BODY]) };
}

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const raw: string[] = [];
  const log = createLogger('info', {
    write(s: string) {
      raw.push(s);
      lines.push(JSON.parse(s) as Record<string, unknown>);
    },
  });
  return { log, lines, raw };
}

function delivery(dns: string, port: number, log: OutboundOptions['log'], extra: Partial<OutboundOptions>): OutboundDelivery {
  return new OutboundDelivery({
    hostname: 'mx.example.com',
    port,
    connectTimeoutMs: 2000,
    commandTimeoutMs: 5000,
    resolve: new DnsResolver({ servers: [dns], timeoutMs: 500, cacheEntries: 100, maxTtlMs: 1000, negativeTtlMs: 1000 }).resolve,
    log,
    ...extra,
  });
}

test('outbound TLS policy: verify needs STARTTLS with a valid chain and the MX name, may takes any certificate, none stays plain; the log names protocol, cipher and verification', async () => {
  const pki = makePki('mx.good.example');
  const tlsSink = await startSink({ host: '127.0.0.91', server: { hideSTARTTLS: false, key: pki.key, cert: pki.cert } });
  const plainSink = await startSink({ host: '127.0.0.92', port: tlsSink.port });
  const dns = await startDns({
    'good.example': { MX: [{ exchange: 'mx.good.example', priority: 10 }] },
    'mx.good.example': { A: ['127.0.0.91'] },
    'wrong.example': { MX: [{ exchange: 'mx.wrong.example', priority: 10 }] },
    'mx.wrong.example': { A: ['127.0.0.91'] }, // the same server: its certificate names mx.good.example
    'plain.example': { MX: [{ exchange: 'mx.plain.example', priority: 10 }] },
    'mx.plain.example': { A: ['127.0.0.92'] }, // no STARTTLS
    'may.example': { MX: [{ exchange: 'mx.wrong.example', priority: 10 }] },
    'none.example': { MX: [{ exchange: 'mx.good.example', priority: 10 }] },
  });
  const { log, lines } = capture();
  const out = delivery(dns.server, tlsSink.port, log, {
    tls: { default: 'may', ca: pki.ca, domains: new Map([['good.example', 'verify'], ['wrong.example', 'verify'], ['plain.example', 'verify'], ['none.example', 'none']] as const) },
  });
  try {
    const good = await out.deliver(job(['a@good.example']));
    assert.equal(good.outcomes[0]!.status, 'delivered', good.outcomes[0]!.reply);
    const wrong = await out.deliver(job(['b@wrong.example']));
    assert.equal(wrong.outcomes[0]!.status, 'deferred');
    assert.match(wrong.outcomes[0]!.reply, /^4\.4\.1 mx\.wrong\.example\[127\.0\.0\.91\]: .*(altnames|mx\.wrong\.example)/);
    const plain = await out.deliver(job(['c@plain.example']));
    assert.equal(plain.outcomes[0]!.status, 'deferred');
    assert.match(plain.outcomes[0]!.reply, /STARTTLS required but not offered/);
    const may = await out.deliver(job(['d@may.example']));
    assert.equal(may.outcomes[0]!.status, 'delivered', 'may: an unverifiable certificate still carries the mail');
    const none = await out.deliver(job(['e@none.example']));
    assert.equal(none.outcomes[0]!.status, 'delivered');

    assert.deepEqual(
      tlsSink.messages.map((m) => [m.to[0], m.secure]),
      [['a@good.example', true], ['d@may.example', true], ['e@none.example', false]],
    );
    assert.equal(plainSink.rcpts.length, 0, 'nothing was sent in plaintext to a verify domain');
    assert.ok(!tlsSink.rcpts.some((r) => r.address === 'b@wrong.example'), 'nothing was sent to a host whose name did not verify');
    const attempt = (rcptServer: string) => lines.find((l) => l.ev === 'deliver-attempt' && l.outcome === 'done' && l.server === rcptServer);
    const verified = lines.filter((l) => l.ev === 'deliver-attempt' && l.outcome === 'done').map((l) => l.tls);
    assert.match(String(attempt('mx.good.example[127.0.0.91]')?.tls), /^TLSv1\.[23] \S+ verified$/);
    assert.deepEqual(verified.slice(1).map((t) => String(t).replace(/^TLSv1\.[23] \S+ /, '')), ['unverified', 'none']);
  } finally {
    out.close();
    await tlsSink.close();
    await plainSink.close();
    await dns.close();
  }
});

test('smart host: every domain goes to the relay with AUTH over verified TLS; a wrong password defers; no password over plaintext unless allowed', async () => {
  const pki = makePki('relay.isp.example');
  const logins: Array<{ user: string; secure: boolean }> = [];
  const onAuth: NonNullable<SMTPServerOptions['onAuth']> = (auth, session, cb) => {
    logins.push({ user: String(auth.username), secure: session.secure });
    if (auth.username === 'moat' && auth.password === 'relay-secret-42') return cb(null, { user: 'moat' });
    cb(Object.assign(new Error('5.7.8 Authentication failed'), { responseCode: 535 }));
  };
  const relay = await startSink({ host: '127.0.0.93', server: { hideSTARTTLS: false, key: pki.key, cert: pki.cert, authOptional: false, authMethods: ['PLAIN', 'LOGIN'], onAuth } });
  const plainRelay = await startSink({ host: '127.0.0.94', port: relay.port, server: { authOptional: false, allowInsecureAuth: true, authMethods: ['PLAIN', 'LOGIN'], onAuth } });
  const dns = await startDns({ 'relay.isp.example': { A: ['127.0.0.93'] } }); // no MX for any destination: the relay needs none
  const { log, raw } = capture();
  const smart = (auth: { pass: string; allowPlaintext?: boolean }, host = 'relay.isp.example', tls: 'verify' | 'may' = 'verify') =>
    delivery(dns.server, 25, log, { tls: { default: 'may', ca: pki.ca }, smartHost: { host, port: relay.port, tls, auth: { user: 'moat', allowPlaintext: false, ...auth } }, idle: { idleMs: 5000, maxPerDestination: 2, maxTotal: 4 } });
  try {
    const good = smart({ pass: 'relay-secret-42' });
    const r = await good.deliver(job(['x@one.example', 'y@two.example', 'z@three.example']));
    assert.deepEqual(r.outcomes.map((o) => o.status), ['delivered', 'delivered', 'delivered']);
    assert.deepEqual(relay.messages.map((m) => m.to), [['x@one.example', 'y@two.example', 'z@three.example']], 'one transaction, at the relay');
    assert.equal(relay.messages[0]!.secure, true);
    assert.equal(good.destinationOf('one.example'), good.destinationOf('two.example'), 'the queue sees one destination');
    await good.deliver(job(['w@four.example'], '0000000000020000'));
    assert.equal(relay.connections, 1, 'the second message reused the logged-in connection');
    good.close();

    const wrong = smart({ pass: 'not-the-password' });
    const bad = await wrong.deliver(job(['v@five.example']));
    assert.equal(bad.outcomes[0]!.status, 'deferred');
    assert.match(bad.outcomes[0]!.reply, /^4\.7\.8 relay\.isp\.example\[127\.0\.0\.93\]: AUTH answered: 535 /);
    assert.deepEqual(bad.unreachable, ['[smart host]']);
    wrong.close();

    const before = logins.length;
    const plain = smart({ pass: 'relay-secret-42' }, '127.0.0.94', 'may');
    const refused = await plain.deliver(job(['u@six.example']));
    assert.equal(refused.outcomes[0]!.status, 'deferred');
    assert.match(refused.outcomes[0]!.reply, /refusing to send credentials without TLS/);
    assert.equal(logins.length, before, 'no AUTH was attempted in plaintext');
    plain.close();
    const allowed = smart({ pass: 'relay-secret-42', allowPlaintext: true }, '127.0.0.94', 'may');
    const sent = await allowed.deliver(job(['t@seven.example']));
    assert.equal(sent.outcomes[0]!.status, 'delivered', sent.outcomes[0]!.reply);
    assert.deepEqual(plainRelay.messages.map((m) => [m.to[0], m.secure]), [['t@seven.example', false]]);
    allowed.close();

    const text = raw.join('');
    assert.ok(!text.includes('relay-secret-42') && !text.includes(Buffer.from('\0moat\0relay-secret-42').toString('base64')), 'the password is never logged');
    assert.ok(!text.includes('not-the-password'));
  } finally {
    await relay.close();
    await plainRelay.close();
    await dns.close();
  }
});
