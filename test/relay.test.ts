// The inbound relay end to end: real SMTP clients in, a real SMTP server as the internal server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import nodemailer from 'nodemailer';
import { startSink, closedPort } from './helpers/sink.ts';
import { startMoat, withRelay } from './helpers/moat.ts';
import { RawSmtp } from './helpers/smtp-client.ts';
import { withTmpfs } from './helpers/tmpfs.ts';

const RAW = 'From: Alice <alice@sender.example>\r\nTo: bob@example.com\r\nSubject: hello\r\nMessage-ID: <t1@sender.example>\r\n\r\nLine one\r\n.starts with a dot\r\n\r\nbytes: \xe9\xff\x00 end\r\n';

async function send(port: number, env: { from: string; to: string[] }, raw: string | Buffer) {
  const t = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true });
  try {
    return await t.sendMail({ envelope: env, raw });
  } finally {
    t.close();
  }
}

test('a message for a local domain reaches the internal server with its envelope and body intact', async () => {
  await withRelay({}, async ({ moat, sink }) => {
      const info = await send(moat.port, { from: 'alice@sender.example', to: ['bob@example.com', 'Carol@EXAMPLE.org'] }, Buffer.from(RAW, 'latin1'));
      assert.match(info.response, /^250 2\.0\.0 Ok: queued as [0-9A-F]{16}$/);
      const id = /queued as ([0-9A-F]{16})/.exec(info.response)![1]!;
      const [m] = await sink.waitFor(1);
      assert.equal(m!.from, 'alice@sender.example');
      assert.deepEqual(m!.to, ['bob@example.com', 'Carol@example.org']);
      const body = m!.body.toString('latin1');
      const rx = /^Received: from [^\r\n]+\r\n\tby mx\.example\.com \(moat\) with ESMTP id ([0-9A-F]{16});\r\n\t[A-Z][a-z]{2}, \d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d \+0000\r\n/;
      const rm = rx.exec(body);
      assert.ok(rm, `Received header first: ${JSON.stringify(body.slice(0, 200))}`);
      assert.equal(rm[1], id, 'Received names the queue id from the 250');
      assert.equal(body.slice(rm[0].length), RAW, 'body byte for byte');
  });
});

test('relay tricks and foreign domains are refused at RCPT and nothing reaches the internal server', async () => {
  const sink = await startSink();
  const moat = await startMoat([{ port: sink.port }]);
  const tricks = [
    '<user@other.net>',
    '<user@example.com.evil.net>',
    '<user@sub.example.com>',
    '<@example.com:user@other.net>',
    '<@a.example,@example.com:user@other.net>',
    '<user%other.net@example.com>',
    '<other.net!user@example.com>',
    '<"user@other.net"@example.com>',
    '<user@example.com.>',
    '<user@[127.0.0.1]>',
    '<user@[IPv6:::1]>',
  ];
  try {
    const c = await RawSmtp.open(moat.port);
    assert.match(await c.reply(), /^220 mx\.example\.com ESMTP moat/);
    const ehlo = await c.cmd('EHLO client.example.net');
    for (const ext of ['PIPELINING', '8BITMIME', 'SIZE 26214400', 'ENHANCEDSTATUSCODES']) assert.match(ehlo, new RegExp(`^250[- ]${ext}$`, 'm'));
    assert.match(await c.cmd('MAIL FROM:<spammer@other.net>'), /^250/);
    for (const t of tricks) {
      const r = await c.cmd(`RCPT TO:${t}`);
      assert.equal(r, '554 5.7.1 Relay rejected for policy reasons', `RCPT TO:${t}`);
    }
    assert.match(await c.cmd('DATA'), /^503/, 'no recipient accepted, no DATA');
    assert.match(await c.cmd('RCPT TO:<user@example.com>'), /^250/, 'a local recipient still works afterwards');
    assert.match(await c.cmd('RCPT TO:<not an address>'), /^501 5\.1\.3 /);
    await c.cmd('QUIT');
    // (the health monitor's probe may greet the internal server; no transaction may reach it)
    assert.deepEqual(sink.rcpts, [], 'no recipient was offered to the internal server');
    assert.equal(sink.messages.length, 0);
  } finally {
    await moat.stop();
    await sink.close();
  }
});

test('with the internal server down the message is queued and arrives once it is back', async () => {
  const port = await closedPort();
  const moat = await startMoat([{ port }]);
  let sink: Awaited<ReturnType<typeof startSink>> | undefined;
  try {
    const info = await send(moat.port, { from: 'a@sender.example', to: ['bob@example.com'] }, 'Subject: later\r\n\r\nbody\r\n');
    assert.match(info.response, /^250 /);
    assert.equal(moat.spool.messages.size, 1, 'still queued');
    sink = await startSink({ port });
    moat.queue.flush();
    const [m] = await sink.waitFor(1);
    assert.match(m!.body.toString(), /Subject: later\r\n\r\nbody\r\n$/);
    for (let i = 0; i < 50 && moat.spool.messages.size; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(moat.spool.messages.size, 0, 'done and gone from the queue');
  } finally {
    await moat.stop();
    await sink?.close();
  }
});

test('failover: the first server refuses connections, the second gets the mail', async () => {
  const dead = await closedPort();
  const sink = await startSink();
  const moat = await startMoat([
    { port: dead, priority: 10 },
    { port: sink.port, priority: 20 },
  ]);
  try {
    await send(moat.port, { from: 'a@sender.example', to: ['bob@example.com'] }, 'Subject: x\r\n\r\ny\r\n');
    const [m] = await sink.waitFor(1);
    assert.deepEqual(m!.to, ['bob@example.com']);
  } finally {
    await moat.stop();
    await sink.close();
  }
});

test('a 4xx for the transaction moves on to the next server', async () => {
  const busy = await startSink({ data: () => ({ code: 451, message: '4.3.0 try later' }) });
  const sink = await startSink();
  const moat = await startMoat([
    { port: busy.port, priority: 1 },
    { port: sink.port, priority: 2 },
  ]);
  try {
    await send(moat.port, { from: 'a@sender.example', to: ['bob@example.com'] }, 'Subject: x\r\n\r\ny\r\n');
    await sink.waitFor(1);
    assert.equal(busy.messages.length, 0);
  } finally {
    await moat.stop();
    await sink.close();
    await busy.close();
  }
});

test('a 5xx from the internal server ends in a DSN to the sender naming the recipient and the reply', async () => {
  await withRelay({ sink: { rcpt: (a) => (a.startsWith('ghost@') ? { code: 550, message: '5.1.1 ghost: no such user here' } : null) } }, async ({ moat, sink }) => {
      await send(moat.port, { from: 'alice@example.org', to: ['ghost@example.com', 'bob@example.com'] }, 'Subject: to a ghost\r\nMessage-ID: <g1@example.org>\r\n\r\nboo\r\n');
      const msgs = await sink.waitFor(2);
      const orig = msgs.find((m) => m.from === 'alice@example.org')!;
      assert.deepEqual(orig.to, ['bob@example.com']);
      const dsn = msgs.find((m) => m.from === '')!;
      assert.ok(dsn, 'a DSN from the null sender');
      assert.deepEqual(dsn.to, ['alice@example.org']);
      const text = dsn.body.toString();
      assert.match(text, /Content-Type: multipart\/report; report-type=delivery-status/);
      assert.match(text, /Final-Recipient: rfc822; ?ghost@example\.com/);
      assert.match(text, /Action: failed/);
      assert.match(text, /Status: 5\.1\.1/);
      assert.match(text, /ghost: no such user here/);
      assert.match(text, /Subject: to a ghost/, 'original headers returned');
      assert.doesNotMatch(text, /\r\n\r\nboo\r\n/, 'the body is not echoed');
  });
});

test('recipient list: unknown users get 550 5.1.1, wildcards admit a whole domain, the cap gives 452 4.5.3', async () => {
  const sink = await startSink();
  const moat = await startMoat([{ port: sink.port }], {
    inbound: { recipients: { mode: 'list', list: ['bob@example.com', '*@example.org'] }, maxRecipients: 3 },
  });
  try {
    const c = await RawSmtp.greeted(moat.port);
    await c.cmd('MAIL FROM:<a@sender.example>');
    assert.equal(await c.cmd('RCPT TO:<nobody@example.com>'), '550 5.1.1 Recipient address rejected: user unknown');
    assert.match(await c.cmd('RCPT TO:<BOB@example.com>'), /^250/);
    assert.match(await c.cmd('RCPT TO:<anyone@example.org>'), /^250/);
    assert.match(await c.cmd('RCPT TO:<other@example.org>'), /^250/);
    assert.match(await c.cmd('RCPT TO:<fourth@example.org>'), /^452 4\.5\.3 /);
    await c.cmd('QUIT');
  } finally {
    await moat.stop();
    await sink.close();
  }
});

test('recipient verify: moat asks the internal server and caches the answer', async () => {
  await withRelay({ inbound: { recipients: { mode: 'verify' } }, sink: { rcpt: (a) => (a === 'bob@example.com' ? null : { code: 550, message: '5.1.1 unknown' }) } }, async ({ moat, sink }) => {
      const c = await RawSmtp.greeted(moat.port);
      await c.cmd('MAIL FROM:<a@sender.example>');
      assert.match(await c.cmd('RCPT TO:<bob@example.com>'), /^250/);
      assert.match(await c.cmd('RCPT TO:<mallory@example.com>'), /^550 5\.1\.1 /);
      const probes = sink.connections;
      assert.match(await c.cmd('RCPT TO:<bob@example.com>'), /^250/);
      assert.match(await c.cmd('RCPT TO:<mallory@example.com>'), /^550 5\.1\.1 /);
      assert.equal(sink.connections, probes, 'answered from the cache');
      await c.cmd('QUIT');
  });
});

test('recipient verify with the internal server down fails closed: 451, never accept', async () => {
  const moat = await startMoat([{ port: await closedPort() }], { inbound: { recipients: { mode: 'verify' } } });
  try {
    const c = await RawSmtp.greeted(moat.port);
    await c.cmd('MAIL FROM:<a@sender.example>');
    assert.equal(await c.cmd('RCPT TO:<bob@example.com>'), '451 4.4.3 Recipient verification unavailable, try again later');
    await c.cmd('QUIT');
  } finally {
    await moat.stop();
  }
});

test('size: SIZE= over the limit is refused at MAIL; a stream over the limit at the end, and nothing is queued', async () => {
  await withRelay({ inbound: { maxMessageSize: 100_000 } }, async ({ moat, sink }) => {
      const c = await RawSmtp.greeted(moat.port);
      assert.match(await c.cmd('MAIL FROM:<a@sender.example> SIZE=200000'), /^552 5\.3\.4 /);
      assert.match(await c.cmd('MAIL FROM:<a@sender.example>'), /^250/);
      assert.match(await c.cmd('RCPT TO:<bob@example.com>'), /^250/);
      assert.match(await c.cmd('DATA'), /^354/);
      const line = 'x'.repeat(998) + '\r\n';
      c.write('Subject: big\r\n\r\n' + line.repeat(150) + '.\r\n');
      assert.match(await c.reply(), /^552 5\.3\.4 /);
      assert.match(await c.cmd('NOOP'), /^250/, 'the session goes on');
      await c.cmd('QUIT');
      assert.equal(moat.spool.messages.size, 0);
      assert.equal(sink.messages.length, 0);
  });
});

test('no room on the spool: 452 4.3.1 at MAIL, never a 250', async () => {
  await withRelay({ storage: { minFreeBytes: Number.MAX_SAFE_INTEGER } }, async ({ moat, sink }) => {
      const c = await RawSmtp.greeted(moat.port);
      assert.equal(await c.cmd('MAIL FROM:<a@sender.example>'), '452 4.3.1 Insufficient system storage, try again later');
      await c.cmd('QUIT');
  });
});

test('a client that disconnects in the middle of DATA leaves nothing queued', async () => {
  await withRelay({}, async ({ moat, sink }) => {
      const c = await RawSmtp.greeted(moat.port);
      await c.cmd('MAIL FROM:<a@sender.example>');
      await c.cmd('RCPT TO:<bob@example.com>');
      await c.cmd('DATA');
      c.write('Subject: cut\r\n\r\nhalf a message');
      await new Promise((r) => setTimeout(r, 50));
      c.destroy();
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(moat.spool.messages.size, 0);
      assert.equal(sink.messages.length, 0);
      // and the daemon still serves
      const info = await send(moat.port, { from: 'a@sender.example', to: ['bob@example.com'] }, 'Subject: ok\r\n\r\nok\r\n');
      assert.match(info.response, /^250 /);
  });
});

test('the spool file system fills up during DATA: 452 4.3.1, nothing queued, service resumes when space returns', async () => {
  await withTmpfs('3m', (mnt) =>
    withRelay({ dataDir: mnt, storage: { minFreeBytes: 4096, segmentBytes: 1024 * 1024 } }, async ({ moat, sink }) => {
      const big = 'Subject: too big for the disk\r\n\r\n' + ('y'.repeat(76) + '\r\n').repeat(50_000);
      await assert.rejects(send(moat.port, { from: 'a@sender.example', to: ['bob@example.com'] }, big), (e: Error & { responseCode?: number; response?: string }) => {
        assert.equal(e.responseCode, 452);
        assert.match(e.response ?? '', /^452 4\.3\.1 /);
        return true;
      });
      assert.equal(moat.spool.messages.size, 0);
      const info = await send(moat.port, { from: 'a@sender.example', to: ['bob@example.com'] }, 'Subject: small\r\n\r\nfits\r\n');
      assert.match(info.response, /^250 /, 'a message that fits is still accepted');
      await sink.waitFor(1);
    }),
  );
});
test('mail that cannot be delivered before queue.maxLifetimeMs is returned to its sender with the last reply', async () => {
  await withRelay(
    {
      queue: { minRetryMs: 50, maxRetryMs: 100, maxLifetimeMs: 600 },
      sink: { rcpt: (a) => (a.startsWith('busy@') ? { code: 451, message: '4.2.1 mailbox busy, try later' } : null) },
    },
    async ({ moat, sink }) => {
      await send(moat.port, { from: 'alice@example.org', to: ['busy@example.com'] }, 'Subject: will expire\r\n\r\nx\r\n');
      const [dsn] = await sink.waitFor(1, 10_000);
      assert.equal(dsn!.from, '');
      assert.deepEqual(dsn!.to, ['alice@example.org']);
      const text = dsn!.body.toString();
      assert.match(text, /Final-Recipient: rfc822; ?busy@example\.com/);
      assert.match(text, /Status: 5\.4\.7/);
      assert.match(text, /expired/i);
      assert.match(text, /mailbox busy, try later/, 'the last reply is named');
      for (let i = 0; i < 50 && moat.spool.messages.size; i++) await new Promise((r) => setTimeout(r, 20));
      assert.equal(moat.spool.messages.size, 0);
    },
  );
});

test('a failure of mail from the null sender is not answered with a DSN (no bounce of a bounce)', async () => {
  await withRelay(
    { sink: { rcpt: (a) => (a.startsWith('ghost@') ? { code: 550, message: '5.1.1 no such user' } : null) } },
    async ({ moat, sink }) => {
      await send(moat.port, { from: '', to: ['ghost@example.com'] }, 'Subject: a bounce\r\n\r\nx\r\n');
      for (let i = 0; i < 100 && moat.spool.messages.size; i++) await new Promise((r) => setTimeout(r, 20));
      assert.equal(moat.spool.messages.size, 0, 'done');
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(sink.messages.length, 0, 'and nothing was sent back');
    },
  );
});

test('a 5xx at the end of data is final for the message and returned to the sender', async () => {
  let first = true;
  await withRelay(
    {
      sink: {
        data: () => {
          if (!first) return null;
          first = false;
          return { code: 554, message: '5.6.0 content refused' };
        },
      },
    },
    async ({ moat, sink }) => {
      await send(moat.port, { from: 'alice@example.org', to: ['bob@example.com'] }, 'Subject: refused\r\n\r\nx\r\n');
      const [dsn] = await sink.waitFor(1, 10_000);
      assert.deepEqual(dsn!.to, ['alice@example.org']);
      assert.match(dsn!.body.toString(), /content refused/);
      assert.match(dsn!.body.toString(), /Status: 5\.6\.0/);
    },
  );
});

test('a recipient given twice is delivered once', async () => {
  await withRelay({}, async ({ moat, sink }) => {
    const c = await RawSmtp.greeted(moat.port);
    await c.cmd('MAIL FROM:<a@sender.example>');
    assert.match(await c.cmd('RCPT TO:<bob@example.com>'), /^250/);
    assert.match(await c.cmd('RCPT TO:<BOB@Example.COM>'), /^250/);
    assert.match(await c.cmd('DATA'), /^354/);
    c.write('Subject: twice\r\n\r\nx\r\n.\r\n');
    assert.match(await c.reply(), /^250 /);
    await c.cmd('QUIT');
    const [m] = await sink.waitFor(1);
    assert.equal(m!.to.length, 1);
  });
});
