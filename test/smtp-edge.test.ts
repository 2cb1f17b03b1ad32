// The SMTP edge against clients that misbehave: early talkers, slow drips, floods,
// malformed and oversized commands. Every case gets a clear reply and loses nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { withRelay } from './helpers/moat.ts';
import { RawSmtp } from './helpers/smtp-client.ts';

test('pregreetMs 0: the greeting is immediate, so a client that pipelines EHLO right after connecting is served', async () => {
  await withRelay({}, async ({ moat }) => {
      const c = await RawSmtp.open(moat.port);
      c.write('EHLO fast.example.net\r\n'); // before reading the banner
      assert.match(await c.reply(), /^220 /);
      assert.match(await c.reply(), /^250-mx\.example\.com/);
      await c.cmd('QUIT');
  });
});

test('pregreetMs: a client that talks before the banner is refused and dropped', async () => {
  await withRelay({ inbound: { pregreetMs: 400 } }, async ({ moat }) => {
      const c = await RawSmtp.open(moat.port);
      c.write('EHLO early.example.net\r\n');
      assert.equal(await c.reply(), '554 5.7.1 Protocol violation: talked before the greeting');
      await assert.rejects(c.reply(1000), /connection closed/, 'and the connection is dropped');
      const polite = await RawSmtp.open(moat.port);
      assert.match(await polite.reply(), /^220 /, 'a client that waits is greeted');
      await polite.cmd('QUIT');
  });
});

test('a session that outlives sessionDeadlineMs is closed with 421 4.4.2, however busy it keeps itself', async () => {
  await withRelay({ inbound: { sessionDeadlineMs: 1000 } }, async ({ moat }) => {
      const c = await RawSmtp.open(moat.port);
      await c.reply();
      await c.cmd('EHLO drip.example.net');
      let last = '';
      for (let i = 0; i < 20 && !c.closed; i++) {
        await new Promise((r) => setTimeout(r, 150));
        try {
          last = await c.cmd('NOOP');
        } catch {
          break;
        }
        if (last.startsWith('421')) break;
      }
      assert.match(last, /^421 4\.4\.2 Session time limit reached/);
  });
});

test('one connection over maxConnections gets 421 4.7.0', async () => {
  await withRelay({ inbound: { maxConnections: 2 } }, async ({ moat }) => {
      const a = await RawSmtp.open(moat.port);
      const b = await RawSmtp.open(moat.port);
      assert.match(await a.reply(), /^220 /);
      assert.match(await b.reply(), /^220 /);
      const c = await RawSmtp.open(moat.port);
      assert.match(await c.reply(), /^421 4\.7\.0 .*Too many connections/);
      a.destroy();
      b.destroy();
  });
});

test('malformed and out-of-order commands get clear replies and the session goes on', async () => {
  await withRelay({}, async ({ moat }) => {
      const c = await RawSmtp.open(moat.port);
      await c.reply();
      assert.match(await c.cmd('MAIL FROM:<a@sender.example>'), /^503 /, 'MAIL before EHLO');
      await c.cmd('EHLO client.example.net');
      assert.match(await c.cmd('RCPT TO:<bob@example.com>'), /^503 /, 'RCPT before MAIL');
      assert.match(await c.cmd('DATA'), /^503 /, 'DATA before RCPT');
      assert.match(await c.cmd('FROB nicate'), /^500 /, 'unknown command');
      assert.match(await c.cmd('MAIL FROM:a@sender.example'), /^501 /, 'path without brackets');
      assert.match(await c.cmd('MAIL FROM:<a@sender>'), /^553 5\.1\.7 /, 'dotless sender domain');
      assert.match(await c.cmd('MAIL FROM:<a@sender.example\x00x>'), /^5\d\d /, 'NUL in the path');
      assert.match(await c.cmd('MAIL FROM:<a@sender.example> SIZE=abc'), /^5\d\d /, 'bad SIZE');
      assert.match(await c.cmd('MAIL FROM:<>'), /^250 /, 'the null sender is allowed');
      assert.match(await c.cmd('MAIL FROM:<b@sender.example>'), /^503 /, 'nested MAIL');
      assert.match(await c.cmd('RCPT TO:<>'), /^501 /, 'empty recipient');
      assert.match(await c.cmd('RCPT TO:<postmaster>'), /^250 /, 'bare postmaster is accepted (RFC 5321)');
      assert.match(await c.cmd('RSET'), /^250 /);
      assert.match(await c.cmd('NOOP'), /^250 /);
      await c.cmd('QUIT');
  });
});

test('an oversized command line is refused without taking the daemon down', async () => {
  await withRelay({}, async ({ moat }) => {
      const c = await RawSmtp.greeted(moat.port);
      c.write('MAIL FROM:<' + 'a'.repeat(64 * 1024) + '@sender.example>\r\n');
      const r = await c.reply().catch((e: Error) => `closed: ${e.message}`);
      assert.match(r, /^(5\d\d |421 |closed)/);
      const d = await RawSmtp.open(moat.port);
      assert.match(await d.reply(), /^220 /, 'the next client is served');
      await d.cmd('QUIT');
  });
});

test('bare postmaster goes to the postmaster of the first local domain', async () => {
  await withRelay({}, async ({ moat, sink }) => {
      const c = await RawSmtp.greeted(moat.port);
      await c.cmd('MAIL FROM:<a@sender.example>');
      assert.match(await c.cmd('RCPT TO:<Postmaster>'), /^250 /);
      assert.match(await c.cmd('DATA'), /^354 /);
      c.write('Subject: hi postmaster\r\n\r\nhello\r\n.\r\n');
      assert.match(await c.reply(), /^250 2\.0\.0 /);
      await c.cmd('QUIT');
      const [m] = await sink.waitFor(1);
      assert.deepEqual(m!.to, ['postmaster@example.com']);
  });
});
