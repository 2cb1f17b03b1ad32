// SMTP smuggling end to end: every "end of data" look-alike that smtp-server
// does not treat as the end (only CRLF.CRLF ends DATA) is refused by the guard,
// or with bareLineEndings 'normalise' delivered as one message with CRLF only;
// the internal server never sees a second, smuggled message. Long lines too.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { withRelay } from './helpers/moat.ts';
import { RawSmtp } from './helpers/smtp-client.ts';

const SEQUENCES = ['\n.\n', '\r.\n', '\n.\r\n', '\r\n.\n', '\r.\r', '\r\n.\r'];
const SMUGGLED = 'MAIL FROM:<evil@x.example>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nFrom: evil@x.example\r\nSubject: smuggled\r\n\r\nowned\r\n';

/** One transaction on a fresh session; returns the reply to the data and checks it was the only one. */
async function transaction(port: number, data: string): Promise<string> {
  const c = await RawSmtp.greeted(port);
  try {
    assert.match(await c.cmd('MAIL FROM:<alice@sender.example>'), /^250/);
    assert.match(await c.cmd('RCPT TO:<bob@example.com>'), /^250/);
    assert.match(await c.cmd('DATA'), /^354/);
    c.write(Buffer.from(data, 'latin1'));
    const r = await c.reply();
    assert.match(await c.cmd('QUIT'), /^221/, 'exactly one reply to the data: the next one answers QUIT');
    return r;
  } finally {
    c.destroy();
  }
}

const message = (seq: string) => `From: alice@sender.example\r\nSubject: hello\r\n\r\nbody${seq}${SMUGGLED}.\r\n`;
const hasBare = (b: Buffer) => /\r(?!\n)|(?<!\r)\n/.test(b.toString('latin1'));

test('every smuggling sequence is refused with 550 5.6.0 and nothing reaches the internal server', async () => {
  await withRelay({}, async ({ moat, sink }) => {
    for (const seq of SEQUENCES) {
      const r = await transaction(moat.port, message(seq));
      assert.equal(r, '550 5.6.0 Message contains bare CR or LF line endings (SMTP smuggling protection)', JSON.stringify(seq));
    }
    // a clean message afterwards goes through, and is the only one the internal server sees
    assert.match(await transaction(moat.port, 'Subject: clean\r\n\r\nclean\r\n.\r\n'), /^250 2\.0\.0 Ok: queued as /);
    const [m] = await sink.waitFor(1);
    assert.match(m!.body.toString('latin1'), /\r\n\r\nclean\r\n$/);
    await sleep(300);
    assert.equal(sink.messages.length, 1);
  });
});

test("with bareLineEndings 'normalise' each such message arrives once, as one message with CRLF line endings only", async () => {
  await withRelay({ inbound: { data: { bareLineEndings: 'normalise' } } }, async ({ moat, sink }) => {
    for (const [i, seq] of SEQUENCES.entries()) {
      const r = await transaction(moat.port, message(seq));
      assert.match(r, /^250 2\.0\.0 Ok: queued as /, JSON.stringify(seq));
      const msgs = await sink.waitFor(i + 1);
      const m = msgs[i]!;
      assert.deepEqual(m.to, ['bob@example.com'], JSON.stringify(seq));
      assert.ok(!hasBare(m.body), `${JSON.stringify(seq)}: no bare CR or LF in ${JSON.stringify(m.body.toString('latin1'))}`);
      assert.match(m.body.toString('latin1'), /\r\nbody\r\n[\s\S]*MAIL FROM:<evil@x\.example>\r\n[\s\S]*\r\nowned\r\n$/, 'the smuggled lines are just text of the one message');
    }
    await sleep(300);
    assert.equal(sink.messages.length, SEQUENCES.length, 'no second message');
    assert.ok(sink.messages.every((m) => m.to.length === 1 && m.to[0] === 'bob@example.com'), 'the victim got nothing');
  });
});

const withLine = (n: number) => `Subject: long\r\n\r\nshort\r\n${'y'.repeat(n)}\r\nend\r\n.\r\n`;

test('a line of 999 octets is refused with 550 5.6.0, one of 998 accepted', async () => {
  await withRelay({}, async ({ moat, sink }) => {
    assert.equal(await transaction(moat.port, withLine(999)), '550 5.6.0 Message has a line over 998 octets');
    assert.match(await transaction(moat.port, withLine(998)), /^250 /);
    const [m] = await sink.waitFor(1);
    assert.ok(m!.body.toString('latin1').endsWith(`\r\n${'y'.repeat(998)}\r\nend\r\n`));
    await sleep(200);
    assert.equal(sink.messages.length, 1);
  });
});

test("with longLines 'accept' a line of 999 octets goes through unchanged", async () => {
  await withRelay({ inbound: { data: { longLines: 'accept' } } }, async ({ moat, sink }) => {
    assert.match(await transaction(moat.port, withLine(999)), /^250 /);
    const [m] = await sink.waitFor(1);
    assert.ok(m!.body.toString('latin1').endsWith(`\r\n${'y'.repeat(999)}\r\nend\r\n`));
  });
});

test("with longLines 'fold' a line of 2500 octets arrives folded with CRLF SPACE, nothing lost", async () => {
  await withRelay({ inbound: { data: { longLines: 'fold' } } }, async ({ moat, sink }) => {
    assert.match(await transaction(moat.port, withLine(2500)), /^250 /);
    const [m] = await sink.waitFor(1);
    const body = m!.body.toString('latin1');
    assert.ok(body.endsWith(`\r\n${'y'.repeat(998)}\r\n ${'y'.repeat(997)}\r\n ${'y'.repeat(505)}\r\nend\r\n`), 'folded at 998 octets');
    for (const line of body.split('\r\n')) assert.ok(line.length <= 998);
  });
});
