// Fuzzing SMTP AUTH and STARTTLS through the wire: outside clients (127.0.0.x, not an internal
// network) send AUTH PLAIN/LOGIN/other mechanisms with random and grammar-shaped credentials,
// continuation lines, cancels, AUTH= parameters and relay attempts, in the clear and inside
// TLS after STARTTLS, with STARTTLS repeated and misplaced. Whatever comes in: only
// well-formed replies, never a 235 for a wrong password or for any password in the clear,
// nothing relayed outward (the MX of the foreign domain receives nothing), and a
// well-formed session is still served afterwards.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { withRelay } from '../helpers/moat.ts';
import { startSink } from '../helpers/sink.ts';
import { startDns } from '../helpers/dns.ts';
import { makePki } from '../helpers/certs.ts';
import { hashPassword } from '../../firmware/console/auth.ts';
import { session, tlsSession, wellFormed, stillServes } from './properties.ts';
import { fuzzParams } from './settings.ts';

const USER = 'laptop';
const SECRET = 'roaming-laptop-secret';
const b64 = (s: string) => Buffer.from(s, 'latin1').toString('base64');

const user = fc.oneof(fc.constantFrom(USER, 'LAPTOP', 'laptop ', '', 'root', 'a'.repeat(300), 'laptop\0x'), fc.string({ maxLength: 12 }));
const wrong = fc.oneof(fc.constantFrom('', 'roaming-laptop-secre', 'ROAMING-LAPTOP-SECRET', SECRET + ' ', SECRET + '\0', 'x'.repeat(2000)), fc.string({ maxLength: 30 })).filter((p) => p !== SECRET);
const credLine = fc.oneof(
  fc.tuple(fc.string({ maxLength: 6 }), user, wrong).map(([z, u, p]) => b64(`${z}\0${u}\0${p}`)),
  fc.tuple(user, wrong).map(([u, p]) => b64(`${u}\0${p}`)), // one NUL only
  fc.constantFrom('=', '*', '', '====', '!!!not base64!!!', 'A'.repeat(20_000), b64('\0\0'), b64('\0' + USER + '\0')),
  fc.string({ maxLength: 40 }),
);
const authCommand = fc.oneof(
  { weight: 4, arbitrary: credLine.map((c) => `AUTH PLAIN ${c}`) },
  { weight: 2, arbitrary: fc.tuple(credLine, credLine).map(([c1, c2]) => `AUTH PLAIN\r\n${c1}\r\n${c2}`) },
  { weight: 3, arbitrary: fc.tuple(user, wrong, fc.boolean()).map(([u, p, cancel]) => (cancel ? `AUTH LOGIN\r\n${b64(u)}\r\n*` : `AUTH LOGIN ${b64(u)}\r\n${b64(p)}`)) },
  { weight: 1, arbitrary: fc.tuple(credLine, credLine).map(([a, b]) => `AUTH LOGIN\r\n${a}\r\n${b}`) },
  { weight: 1, arbitrary: fc.constantFrom('AUTH', 'AUTH CRAM-MD5', 'AUTH XOAUTH2 dXNlcj0=', 'AUTH plain', 'AUTH PLAIN =', 'AUTH LOGIN =', 'AUTH ' + 'P'.repeat(600), 'STARTTLS', 'STARTTLS now', 'EHLO again.example', 'RSET', 'NOOP') },
  { weight: 2, arbitrary: fc.constantFrom('RSET\r\nMAIL FROM:<carol@example.com>\r\nRCPT TO:<grace@auth.example>\r\nDATA\r\nSubject: x\r\n\r\nrelay me\r\n.', 'RSET\r\nMAIL FROM:<carol@example.com> AUTH=laptop@example.com\r\nRCPT TO:<grace@auth.example>') },
  { weight: 1, arbitrary: fc.constantFrom('MAIL FROM:<carol@example.com> AUTH=<>', 'MAIL FROM:<carol@example.com> AUTH=laptop@example.com', 'MAIL FROM:<carol@example.com>', 'RCPT TO:<grace@auth.example>', 'RCPT TO:<bob@example.com>', 'DATA\r\nSubject: x\r\n\r\nrelay me\r\n.') },
);
const eol = fc.constantFrom('\r\n', '\r\n', '\r\n', '\n', '');
const stream = fc.array(fc.tuple(authCommand, eol), { minLength: 1, maxLength: 5 }).map((cs) => Buffer.from(cs.map(([c, e]) => c + e).join(''), 'latin1'));
// in the clear, even the right password must not authenticate
// (STARTTLS in the clear with commands behind it is the injection case, tested on its own below:
// moat rightly drops what follows STARTTLS and waits for the handshake, so such a stream waits)
const clear = fc.tuple(fc.boolean(), stream.filter((b) => !b.toString('latin1').includes('STARTTLS'))).map(([right, s]) => (right ? Buffer.concat([Buffer.from(`EHLO fuzz.example.net\r\nAUTH PLAIN ${b64(`\0${USER}\0${SECRET}`)}\r\n`), s]) : Buffer.concat([Buffer.from('EHLO fuzz.example.net\r\n'), s])));

test('SMTP AUTH and STARTTLS: random credentials in the clear and inside TLS never authenticate or relay; replies stay well formed', async () => {
  const pki = makePki('mx.example.com');
  const passwordHash = await hashPassword(SECRET);
  const mx = await startSink({ host: '127.0.0.68' });
  const dns = await startDns({ 'auth.example': { MX: [{ exchange: 'mx.auth.example', priority: 10 }] }, 'mx.auth.example': { A: ['127.0.0.68'] } });
  try {
    await withRelay(
      {
        inbound: { tls: { certFile: pki.certFile, keyFile: pki.keyFile }, maxMessageSize: 1024 * 1024 },
        dns: { servers: [dns.server], timeoutMs: 500 },
        outbound: { port: mx.port, users: [{ name: USER, passwordHash }] },
      },
      async ({ moat }) => {
        let next = 0;
        const seen = new Map<string, number>();
        const check = (replies: string[], inTls: boolean) => {
          // "334 " (an empty challenge) comes back as "334": the reply reader trims line ends
          wellFormed(replies.map((r) => (r === '334' ? '334 ' : r)));
          for (const r of replies) seen.set(r.slice(0, 3), (seen.get(r.slice(0, 3)) ?? 0) + 1);
          const ok = replies.filter((r) => r.startsWith('235'));
          assert.equal(ok.length, 0, `no 235 ${inTls ? 'for a wrong password' : 'in the clear'}: ${replies.join(' | ')}`);
        };
        const from = () => `127.0.0.${2 + (next++ % 200)}`;
        await fc.assert(
          fc.asyncProperty(clear, async (s) => check(await session(moat.port, from(), s), false)),
          fuzzParams(40),
        );
        await fc.assert(
          fc.asyncProperty(stream, async (s) => check(await tlsSession(moat.port, from(), Buffer.concat([Buffer.from('EHLO fuzz.example.net\r\n'), s]), pki.ca), true)),
          fuzzParams(12),
        );
        await stillServes(moat.port);
        for (const code of ['535', '538', '554']) assert.ok((seen.get(code) ?? 0) > 0, `the streams reach a ${code} reply (${JSON.stringify([...seen])})`);
        assert.equal(mx.messages.length, 0, 'nothing was relayed outward');
      },
    );
  } finally {
    await mx.close();
    await dns.close();
  }
});

test('STARTTLS injection: commands pipelined in the clear behind STARTTLS are dropped, not run inside TLS', async () => {
  const pki = makePki('mx.example.com');
  await withRelay({ inbound: { tls: { certFile: pki.certFile, keyFile: pki.keyFile } } }, async ({ moat }) => {
    const replies = await tlsSession(moat.port, '127.0.0.7', Buffer.from('EHLO fuzz.example.net\r\nMAIL FROM:<alice@sender.example>\r\nQUIT\r\n'), pki.ca, 'MAIL FROM:<mallory@attacker.example>\r\nRCPT TO:<bob@example.com>\r\n');
    assert.deepEqual(
      replies.map((r) => r.slice(0, 4)),
      ['250-', '250 ', '221 '],
      `inside TLS only the replies to what was sent inside TLS: ${replies.join(' | ')}`,
    );
  });
});
