// Fuzzing the SMTP dialogue through the wire: random byte streams and grammar-shaped
// command sequences (commands, arguments, parameters, case, bare CR/LF, NUL, long lines,
// DATA bodies with dot lines) sent over TCP to a running moat. Whatever comes in: no crash
// (moat runs in this process), only well-formed replies, every session ends when the
// client says QUIT after ending any DATA, memory stays bounded, and a well-formed session
// from another address is still answered 250 after each batch.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { withRelay } from '../helpers/moat.ts';
import { session, wellFormed, stillServes } from './properties.ts';
import { fuzzParams } from './settings.ts';

const word = fc.oneof(fc.constantFrom('EHLO', 'HELO', 'MAIL', 'RCPT', 'DATA', 'RSET', 'NOOP', 'QUIT', 'VRFY', 'EXPN', 'HELP', 'STARTTLS', 'AUTH', 'BDAT', 'XCLIENT', 'XFORWARD', 'ETRN', 'TURN'), fc.string({ maxLength: 6 }));
const addr = fc.oneof(fc.constantFrom('<bob@example.com>', '<>', '<postmaster>', '<a%b@example.com>', '<@x:a@example.com>', '<"q"@example.com>', 'bob@example.com', '<bob@[127.0.0.1]>', '<' + 'a'.repeat(300) + '@example.com>'), fc.emailAddress().map((a) => `<${a}>`));
const param = fc.constantFrom('', ' SIZE=100', ' SIZE=99999999999999', ' BODY=8BITMIME', ' BODY=BINARYMIME', ' SMTPUTF8', ' RET=FULL', ' ENVID=x', ' NOTIFY=NEVER', ' X=' + 'y'.repeat(600), ' AUTH=<>');
const command = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(fc.constantFrom('MAIL FROM:', 'RCPT TO:', 'mail from:', 'Rcpt To: ', 'MAIL FROM: '), addr, param).map(([v, a, p]) => v + a + p) },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom('EHLO ', 'HELO ', 'ehlo '), fc.oneof(fc.domain(), fc.constantFrom('', '[127.0.0.1]', '127.0.0.1', 'mx.example.com', 'x'.repeat(600)))).map(([v, h]) => v + h) },
  { weight: 2, arbitrary: fc.constantFrom('DATA', 'RSET', 'NOOP', 'QUIT', 'STARTTLS', 'AUTH PLAIN AGFhAGI=', 'BDAT 10 LAST', 'VRFY bob', 'HELP') },
  { weight: 2, arbitrary: fc.tuple(word, fc.string({ maxLength: 40 })).map(([w, a]) => `${w} ${a}`) },
  { weight: 2, arbitrary: fc.array(fc.oneof(fc.constantFrom('Subject: x', '.', '..', '.\r', 'From: <a@b.example>', '', '--b', 'a'.repeat(1100), '\0', '\r', 'X: \x7f\xff'), fc.string({ maxLength: 30 })), { maxLength: 8 }).map((ls) => ls.join('\r\n')) },
);
const eol = fc.constantFrom('\r\n', '\r\n', '\r\n', '\n', '\r', '');
const grammar = fc.tuple(fc.constantFrom('EHLO fuzz.example.net', 'HELO fuzz.example.net', ''), fc.array(fc.tuple(command, eol), { maxLength: 14 })).map(([greet, cs]) => Buffer.from((greet ? greet + '\r\n' : '') + cs.map(([c, e]) => c + e).join(''), 'latin1'));
const random = fc.oneof(fc.uint8Array({ maxLength: 3000 }).map((a) => Buffer.from(a)), fc.string({ maxLength: 500 }).map((s) => Buffer.from(s)));
const huge = fc.constantFrom(Buffer.alloc(2 * 1024 * 1024, 0x41), Buffer.concat([Buffer.from('EHLO a.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n'), Buffer.alloc(3 * 1024 * 1024, 0x42)]));

test('SMTP dialogue: random and grammar-shaped byte streams through the wire get only well-formed replies; moat still serves afterwards', async () => {
  await withRelay({ inbound: { maxMessageSize: 1024 * 1024 } }, async ({ moat }) => {
    let next = 0;
    const seen = new Map<string, number>();
    const rssBefore = process.memoryUsage().rss;
    const run = async (stream: Buffer) => {
      const from = `127.0.0.${2 + (next++ % 200)}`;
      const replies = await session(moat.port, from, stream);
      wellFormed(replies);
      for (const r of replies) seen.set(r.slice(0, 3), (seen.get(r.slice(0, 3)) ?? 0) + 1);
      if (next % 25 === 0) await stillServes(moat.port);
    };
    await fc.assert(fc.asyncProperty(grammar, run), fuzzParams(150));
    await fc.assert(fc.asyncProperty(random, run), fuzzParams(100));
    await fc.assert(fc.asyncProperty(huge, run), fuzzParams(4));
    await stillServes(moat.port);
    for (const code of ['220', '221', '250', '354', '500', '501', '503']) assert.ok((seen.get(code) ?? 0) > 0, `the streams reach a ${code} reply (${JSON.stringify([...seen])})`);
    const grown = process.memoryUsage().rss - rssBefore;
    assert.ok(grown < 256 * 1024 * 1024, `memory stays bounded (RSS grew by ${(grown / 1048576).toFixed(0)} MB)`);
  });
});
