import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import MailComposer from 'nodemailer/lib/mail-composer/index.js';
import { simpleParser } from 'mailparser';
import { MimeWalker, type MimeListener, type PartInfo, type MimeLimits } from './mime.ts';
import type { Verdict } from './pipeline.ts';

const limits: MimeLimits = { maxHeaderBytes: 64 * 1024, maxHeaderFields: 500, maxPartHeaderBytes: 16 * 1024, maxParts: 100, maxDepth: 8 };

type Seen = { headers: string[]; parts: Array<{ type: string; filename: string | null; encoding: string; depth: number; content: Buffer }>; verdict: Verdict | null };

function recorder(): { listener: MimeListener; seen: Seen } {
  const seen: Seen = { headers: [], parts: [], verdict: null };
  let cur: Buffer[] = [];
  let info: PartInfo | null = null;
  const listener: MimeListener = {
    name: 'recorder',
    headers(fields) {
      seen.headers = fields.map((f) => `${f.name}: ${f.value}`);
      return null;
    },
    partStart(p) {
      assert.equal(info, null, 'parts do not overlap');
      info = p;
      cur = [];
      return null;
    },
    partData(p, data, start, end) {
      assert.equal(p, info);
      cur.push(Buffer.from(data.subarray(start, end))); // the test copies; the walker must not
      return null;
    },
    partEnd(p) {
      assert.equal(p, info);
      seen.parts.push({ type: p.type, filename: p.filename, encoding: p.encoding, depth: p.depth, content: Buffer.concat(cur) });
      info = null;
      return null;
    },
  };
  return { listener, seen };
}

function walk(msg: Buffer, chunking: (b: Buffer) => Buffer[], lim = limits): Seen {
  const { listener, seen } = recorder();
  const w = new MimeWalker([listener], lim);
  for (const c of chunking(msg)) w.push(c);
  seen.verdict = w.end();
  return seen;
}

const whole = (b: Buffer) => [b];
const at = (k: number) => (b: Buffer) => [b.subarray(0, k), b.subarray(k)];
const bytes1 = (b: Buffer) => Array.from({ length: b.length }, (_, i) => b.subarray(i, i + 1));
const bytes2 = (b: Buffer) => Array.from({ length: Math.ceil(b.length / 2) }, (_, i) => b.subarray(2 * i, 2 * i + 2));

function summary(s: Seen) {
  return JSON.stringify({ h: s.headers, p: s.parts.map((p) => ({ ...p, content: p.content.toString('hex') })), v: s.verdict });
}

async function compose(mail: ConstructorParameters<typeof MailComposer>[0]): Promise<Buffer> {
  return new MailComposer(mail).compile().build();
}

const payload = Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7919) & 255));

async function corpus(): Promise<{ plain: Buffer; attachments: Buffer; nested: Buffer }> {
  return {
    plain: await compose({ from: 'a@example.net', to: 'b@example.com', subject: 'plain', text: 'hello\r\n--not a boundary\r\nbye' }),
    attachments: await compose({
      from: 'a@example.net',
      to: 'b@example.com',
      subject: 'files',
      text: 'see attached',
      html: '<p>see attached</p>',
      attachments: [
        { filename: 'data.bin', content: payload },
        { filename: 'notes €.txt', content: 'line one\r\nline two ünïcödé =3D\r\n'.repeat(40), contentTransferEncoding: 'quoted-printable' },
        { filename: 'invoice.pdf.exe', content: Buffer.from('MZ fake executable'), contentType: 'application/octet-stream' },
      ],
    }),
    nested: await compose({
      from: 'a@example.net',
      to: 'b@example.com',
      subject: 'nested',
      text: 'text',
      html: '<b>html</b>',
      watchHtml: '<i>watch</i>',
      attachments: [
        { filename: 'inline.png', content: payload.subarray(0, 500), cid: 'img1' },
        { filename: 'forwarded.eml', content: 'Subject: inner\r\nContent-Type: text/plain\r\n\r\ninner body\r\n', contentType: 'message/rfc822' },
      ],
    }),
  };
}

test('the walker finds what mailparser finds: parts, file names and decoded content', async () => {
  for (const [name, msg] of Object.entries(await corpus())) {
    const seen = walk(msg, whole);
    assert.equal(seen.verdict, null, name);
    const parsed = await simpleParser(msg);
    for (const a of parsed.attachments.filter((x) => x.contentType !== 'message/rfc822' && x.filename)) {
      const mine = seen.parts.find((p) => p.filename === a.filename);
      assert.ok(mine, `${name}: attachment ${a.filename} found`);
      assert.ok(mine.content.equals(a.content), `${name}: ${a.filename} decoded byte for byte`);
    }
    if (parsed.text) {
      const t = seen.parts.find((p) => p.type === 'text/plain' && !p.filename);
      assert.ok(t, `${name}: text part`);
      // mailparser appends the text of attached messages; the first text part starts it
      assert.ok(parsed.text.replace(/\r\n/g, '\n').startsWith(t.content.toString('utf8').replace(/\r\n/g, '\n').trim()), name);
    }
  }
});

test('an attached message is walked into: its own body is a part one level deeper', async () => {
  const { nested } = await corpus();
  const seen = walk(nested, whole);
  const inner = seen.parts.find((p) => p.content.toString() === 'inner body\r\n' || p.content.toString() === 'inner body');
  assert.ok(inner, 'the body of the attached message is seen');
  // multipart/mixed (depth 1) > message/rfc822 (its body one level deeper)
  assert.equal(inner.depth, 2);
  assert.equal(inner.type, 'text/plain');
});

test('every split offset, 1-byte and 2-byte chunks give the same walk as one chunk', async () => {
  for (const [name, msg] of Object.entries(await corpus())) {
    const ref = summary(walk(msg, whole));
    for (let k = 1; k < msg.length; k++) assert.equal(summary(walk(msg, at(k))), ref, `${name} split at ${k}`);
    assert.equal(summary(walk(msg, bytes1)), ref, `${name} in 1-byte chunks`);
    assert.equal(summary(walk(msg, bytes2)), ref, `${name} in 2-byte chunks`);
  }
});

const crafted = (s: string) => Buffer.from(s.replace(/\n/g, '\r\n'));

test('delimiters: only whole lines at a line start, with padding, close and implicit close of inner levels', () => {
  const msg = crafted(
    [
      'Content-Type: multipart/mixed; boundary="outer"',
      '',
      'preamble --outer is not a delimiter',
      '--outer',
      'Content-Type: multipart/alternative; boundary=inner',
      '',
      '--inner',
      'Content-Type: text/plain',
      '',
      'one',
      '--innerX is data',
      '--inner  ',
      'Content-Type: text/html',
      '',
      'two',
      '--outer',
      'Content-Type: application/octet-stream; name="x.bin"',
      'Content-Transfer-Encoding: base64',
      '',
      'AAEC',
      'AwQ=',
      '--outer--',
      'epilogue',
      '',
    ].join('\n'),
  );
  const seen = walk(msg, whole);
  assert.deepEqual(
    seen.parts.map((p) => [p.type, p.content.toString('latin1')]),
    [
      ['text/plain', 'one\r\n--innerX is data'],
      ['text/html', 'two'],
      ['application/octet-stream', '\x00\x01\x02\x03\x04'],
    ],
  );
  const ref = summary(seen);
  for (let k = 1; k < msg.length; k++) assert.equal(summary(walk(msg, at(k))), ref, `split at ${k}`);
  assert.equal(summary(walk(msg, bytes1)), ref);
});

test('bare LF line endings are walked the same way (normalise mode lets them through)', () => {
  const msg = Buffer.from('Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nhello\n--b--\n');
  const seen = walk(msg, whole);
  assert.deepEqual(seen.parts.map((p) => p.content.toString()), ['hello']);
  const ref = summary(seen);
  for (let k = 1; k < msg.length; k++) assert.equal(summary(walk(msg, at(k))), ref, `split at ${k}`);
});

test('a part header cut short by a delimiter still makes a (bodiless) part', () => {
  const msg = crafted('Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain; name=a.exe\n--b\nContent-Type: text/plain\n\nx\n--b--\n');
  const seen = walk(msg, whole);
  assert.deepEqual(seen.parts.map((p) => [p.filename, p.content.toString()]), [['a.exe', ''], [null, 'x']]);
});

test('file names: RFC 2231 continuations with charset, encoded words, content-type name', () => {
  const msg = crafted(
    [
      'Content-Type: multipart/mixed; boundary=b',
      '',
      '--b',
      "Content-Disposition: attachment; filename*0*=utf-8''%E2%82%AC; filename*1=\"rate.pdf.exe\"",
      '',
      'x',
      '--b',
      'Content-Type: application/octet-stream; name="=?UTF-8?B?aW52b2ljZS5wZGYuZXhl?="',
      '',
      'y',
      '--b',
      'Content-Disposition: attachment;',
      ' filename="folded.scr"',
      '',
      'z',
      '--b--',
    ].join('\n'),
  );
  assert.deepEqual(walk(msg, whole).parts.map((p) => p.filename), ['€rate.pdf.exe', 'invoice.pdf.exe', 'folded.scr']);
});

test('limits: header bytes and fields, parts, nesting depth, part header bytes each refuse the message', () => {
  const big = Buffer.from('Subject: ' + 'x'.repeat(70_000) + '\r\n\r\nbody');
  assert.equal(walk(big, whole)?.verdict?.code, 552);
  const many = Buffer.from('X-A: 1\r\n'.repeat(600) + '\r\nbody');
  assert.match(walk(many, whole).verdict?.reason ?? '', /fields/);
  const parts = crafted('Content-Type: multipart/mixed; boundary=b\n\n' + '--b\n\nx\n'.repeat(150) + '--b--\n');
  assert.match(walk(parts, whole).verdict?.reason ?? '', /parts/);
  let deep = '';
  for (let d = 0; d < 12; d++) deep += `Content-Type: multipart/mixed; boundary=l${d}\n\n--l${d}\n`;
  const deepMsg = crafted(deep + '\nx\n');
  assert.match(walk(deepMsg, whole).verdict?.reason ?? '', /nesting/);
  const partHdr = crafted('Content-Type: multipart/mixed; boundary=b\n\n--b\nX-Pad: ' + 'p'.repeat(20_000) + '\n\nx\n--b--\n');
  assert.match(walk(partHdr, whole).verdict?.reason ?? '', /part header/);
  // in 1-byte chunks the same limits hold
  assert.equal(walk(big, bytes1).verdict?.code, 552);
});

test('a listener refusal stops the walk and becomes the verdict', async () => {
  const { attachments } = await corpus();
  const v: Verdict = { stage: 'attachments', code: 550, text: '5.7.1 no', reason: 'exe' };
  let after = 0;
  const w = new MimeWalker(
    [
      { name: 'attachments', partStart: (p) => (p.filename?.endsWith('.exe') ? v : null) },
      { name: 'later', partData: () => (after++, null) },
    ],
    limits,
  );
  w.push(attachments);
  assert.equal(w.end(), v);
  const before = after;
  w.push(attachments);
  assert.equal(after, before, 'nothing is walked after a refusal');
});

test('decoded content hashes equal the attachment hashes for every chunking', async () => {
  const { attachments } = await corpus();
  const want = createHash('sha256').update(payload).digest('hex');
  for (const chunking of [whole, bytes1, at(777), at(1500)]) {
    const bin = walk(attachments, chunking).parts.find((p) => p.filename === 'data.bin');
    assert.equal(createHash('sha256').update(bin!.content).digest('hex'), want);
  }
});
