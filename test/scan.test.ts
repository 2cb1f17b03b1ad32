// The scan pipeline through the wire: what it refuses is refused in the SMTP
// dialogue (the reply to the final dot), nothing of it stays in the spool or
// reaches the internal server; what it accepts arrives byte for byte.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import nodemailer from 'nodemailer';
import type Mail from 'nodemailer/lib/mailer/index.js';
import MailComposer from 'nodemailer/lib/mail-composer/index.js';
import { withRelay } from './helpers/moat.ts';
import { startClamd } from './helpers/clamd.ts';
import { closedPort } from './helpers/sink.ts';
import { RawSmtp } from './helpers/smtp-client.ts';

const env = { from: 'alice@sender.example', to: ['bob@example.com'] };

/** Sends raw message bytes; resolves to the final reply ("250 ..." or "550 ..."). */
async function send(port: number, raw: Buffer | string): Promise<string> {
  const t = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true });
  try {
    const info = await t.sendMail({ envelope: env, raw });
    return info.response;
  } catch (e) {
    const err = e as { response?: string; message: string };
    return err.response ?? err.message;
  } finally {
    t.close();
  }
}

const compose = (m: Mail.Options) => new MailComposer({ from: env.from, to: env.to[0], subject: 'test', ...m }).compile().build();

test('a blocked double extension is refused at the final dot; nothing is spooled or delivered', async () => {
  await withRelay({}, async ({ moat, sink }) => {
    const raw = await compose({ text: 'please pay', attachments: [{ filename: 'invoice.pdf.exe', content: randomBytes(2000) }] });
    assert.match(await send(moat.port, raw), /^550 5\.7\.1 Message content rejected: attachment "invoice\.pdf\.exe" \(\.exe\) not allowed/);
    // an RFC 2231-encoded name and a disguised one are refused too
    const encoded = Buffer.from(
      "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Disposition: attachment; filename*=utf-8''r%C3%A9sum%C3%A9.scr\r\n\r\nx\r\n--b--\r\n",
    );
    assert.match(await send(moat.port, encoded), /^550 5\.7\.1 .*\(\.scr\)/);
    const disguised = await compose({ text: 'x', attachments: [{ filename: 'photo\u202egpj.exe', content: 'x' }] });
    assert.match(await send(moat.port, disguised), /^550 5\.7\.1 .*disguised name/);
    assert.equal(moat.spool.messages.size, 0);
    const clean = await compose({ text: 'fine', attachments: [{ filename: 'report.pdf', content: randomBytes(3000) }] });
    assert.match(await send(moat.port, clean), /^250 /);
    const [m] = await sink.waitFor(1);
    assert.ok(m!.body.includes(clean), 'the clean message arrives byte for byte');
    assert.equal(sink.messages.length, 1);
  });
});

test('attachment policy is configurable: a type pattern blocks, an emptied extension list allows', async () => {
  await withRelay({ scan: { attachments: { blockedExtensions: [], blockedTypes: ['video/*'] } } }, async ({ moat, sink }) => {
    assert.match(await send(moat.port, await compose({ attachments: [{ filename: 'clip.mp4', content: 'x', contentType: 'video/mp4' }] })), /^550 5\.7\.1 .*type video\/mp4/);
    assert.match(await send(moat.port, await compose({ attachments: [{ filename: 'tool.exe', content: 'MZ' }] })), /^250 /);
    await sink.waitFor(1);
  });
});

test('header rules: reject names the rule; tag adds X-Moat-Rule and delivers', async () => {
  const rules = [
    { name: 'no-lottery', header: { field: 'Subject', pattern: 'you (have )?won' }, action: 'reject' as const },
    { name: 'newsletter', header: { field: 'List-Unsubscribe', pattern: '.' }, action: 'tag' as const },
  ];
  await withRelay({ scan: { rules } }, async ({ moat, sink }) => {
    assert.match(await send(moat.port, await compose({ subject: 'YOU WON the prize', text: 'x' })), /^550 5\.7\.1 Message content rejected by rule no-lottery/);
    const news = await compose({ subject: 'monthly news', text: 'x', headers: { 'List-Unsubscribe': '<https://example.net/u>' } });
    assert.match(await send(moat.port, news), /^250 /);
    const [m] = await sink.waitFor(1);
    assert.ok(m!.body.toString().startsWith('X-Moat-Rule: newsletter\r\nReceived: '), `tag header first, then our Received: ${m!.body.subarray(0, 80).toString()}`);
    assert.ok(m!.body.includes(news));
  });
});

test('body rules: a literal in a base64 attachment is refused; a tag literal in a quoted-printable part is tagged', async () => {
  const rules = [
    { name: 'payload', body: 'evil-payload-marker', action: 'reject' as const },
    { name: 'macro', body: 'AutoOpen', action: 'tag' as const },
  ];
  await withRelay({ scan: { rules } }, async ({ moat, sink }) => {
    const b64 = await compose({ text: 'x', attachments: [{ filename: 'a.dat', content: Buffer.concat([randomBytes(3000), Buffer.from('evil-payload-marker'), randomBytes(3000)]) }] });
    assert.ok(!b64.includes('evil-payload-marker'), 'only the decoded attachment shows it');
    assert.match(await send(moat.port, b64), /^550 5\.7\.1 Message content rejected by rule payload/);
    const qp = await compose({ text: 'x', attachments: [{ filename: 'm.txt', content: 'Sub Auto=Open()', contentTransferEncoding: 'quoted-printable' }] });
    const qpMarked = Buffer.from(qp.toString('latin1').replace('Sub Auto=3DOpen()', 'Sub Auto=\r\nOpen()'), 'latin1');
    assert.ok(!qpMarked.includes('AutoOpen'), 'the literal is split by a soft line break in the raw message');
    assert.match(await send(moat.port, qpMarked), /^250 /);
    const [m] = await sink.waitFor(1);
    assert.ok(m!.body.toString().startsWith('X-Moat-Rule: macro\r\n'));
  });
});

test('MIME limits: too many parts and too deep nesting are refused with 550 5.6.0, an oversized header with 552', async () => {
  await withRelay({ scan: { mime: { maxParts: 20, maxDepth: 4 }, headers: { maxBytes: 8192 } } }, async ({ moat }) => {
    const many = 'Content-Type: multipart/mixed; boundary=b\r\n\r\n' + '--b\r\n\r\npart\r\n'.repeat(30) + '--b--\r\n';
    assert.match(await send(moat.port, many), /^550 5\.6\.0 /);
    let deep = '';
    for (let d = 0; d < 6; d++) deep += `Content-Type: multipart/mixed; boundary=l${d}\r\n\r\n--l${d}\r\n`;
    assert.match(await send(moat.port, deep + '\r\nx\r\n'), /^550 5\.6\.0 /);
    assert.match(await send(moat.port, 'X-Big: start\r\n' + ` ${'y'.repeat(90)}\r\n`.repeat(100) + '\r\nbody\r\n'), /^552 5\.3\.4 Message header exceeds/);
    assert.equal(moat.spool.messages.size, 0);
  });
});

test('a clean 10 MB message with attachments passes byte for byte', async () => {
  await withRelay({ inbound: { maxMessageSize: 20 * 1024 * 1024 } }, async ({ moat, sink }) => {
    const big = randomBytes(6 * 1024 * 1024);
    const raw = await compose({
      text: 'lines\r\n'.repeat(100_000),
      attachments: [
        { filename: 'data.bin', content: big },
        { filename: 'notes.txt', content: 'qp ünïcödé =\r\n'.repeat(20_000), contentTransferEncoding: 'quoted-printable' },
      ],
    });
    assert.ok(raw.length > 10_000_000, `${raw.length} bytes`);
    assert.match(await send(moat.port, raw), /^250 /);
    const [m] = await sink.waitFor(1, 60_000);
    const body = m!.body;
    const start = body.indexOf(raw.subarray(0, 64));
    assert.ok(start > 0);
    assert.equal(createHash('sha256').update(body.subarray(start)).digest('hex'), createHash('sha256').update(raw).digest('hex'));
  });
});

const TEST_SIG = 'moat-clamd-test-signature';
const ndb = `Moat.Test.Clamd-1:0:*:${Buffer.from(TEST_SIG).toString('hex')}`;

test('clamd: the test signature is found in a plain body and in a base64 attachment; clean mail passes', async () => {
  const clamd = await startClamd(ndb);
  try {
    for (const address of [clamd.socket, clamd.tcp]) {
      await withRelay({ scan: { clamd: { address } } }, async ({ moat, sink }) => {
        assert.match(await send(moat.port, await compose({ text: `hello ${TEST_SIG} bye` })), /^550 5\.7\.1 Message content rejected: Moat\.Test\.Clamd-1\.UNOFFICIAL found/);
        const att = await compose({ text: 'see file', attachments: [{ filename: 'a.bin', content: Buffer.concat([randomBytes(5000), Buffer.from(TEST_SIG), randomBytes(5000)]) }] });
        assert.match(await send(moat.port, att), /^550 5\.7\.1 .*Moat\.Test\.Clamd-1/);
        assert.equal(moat.spool.messages.size, 0);
        assert.match(await send(moat.port, await compose({ text: 'nothing to see' })), /^250 /);
        await sink.waitFor(1);
      });
    }
  } finally {
    await clamd.stop();
  }
});

test('clamd unreachable: 451 4.7.1 by default (nothing spooled); onFailure accept lets mail through', async () => {
  const port = await closedPort();
  await withRelay({ scan: { clamd: { address: `127.0.0.1:${port}` } } }, async ({ moat, sink }) => {
    assert.match(await send(moat.port, await compose({ text: 'x' })), /^451 4\.7\.1 Virus scanner unavailable/);
    assert.equal(moat.spool.messages.size, 0);
    assert.equal(sink.messages.length, 0);
  });
  await withRelay({ scan: { clamd: { address: '/nonexistent/clamd.sock', onFailure: 'accept' } } }, async ({ moat, sink }) => {
    assert.match(await send(moat.port, await compose({ text: 'x' })), /^250 /);
    await sink.waitFor(1);
  });
});

test('clamd stopped in the middle of a message: that message gets 451 4.7.1 and is not spooled; earlier mail is delivered', async () => {
  const clamd = await startClamd(ndb);
  await withRelay({ scan: { clamd: { address: clamd.socket } } }, async ({ moat, sink }) => {
    assert.match(await send(moat.port, await compose({ text: 'before' })), /^250 /);
    const c = await RawSmtp.greeted(moat.port);
    assert.match(await c.cmd('MAIL FROM:<alice@sender.example>'), /^250/);
    assert.match(await c.cmd('RCPT TO:<bob@example.com>'), /^250/);
    assert.match(await c.cmd('DATA'), /^354/);
    c.write('Subject: half\r\n\r\n' + 'first half of the message\r\n'.repeat(20_000));
    await clamd.stop();
    c.write('second half\r\n'.repeat(1000) + '.\r\n');
    assert.match(await c.reply(), /^451 4\.7\.1 Virus scanner unavailable/);
    assert.match(await c.cmd('QUIT'), /^221/);
    c.destroy();
    await sink.waitFor(1);
    // the delivered message leaves the queue; the refused one never entered it
    for (let i = 0; moat.spool.messages.size > 0 && i < 200; i++) await sleep(25);
    assert.equal(moat.spool.messages.size, 0);
    assert.equal(sink.messages.length, 1);
  });
});
