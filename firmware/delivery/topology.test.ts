import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { pipeline } from 'node:stream';
import { authservId, forgedResultsOf, HeaderStripper } from './topology.ts';

const msg =
  'Received: from domino.corp.example (10.0.0.5)\r\n\tby mx.example.com; Sat, 28 Nov 2026\r\n' +
  'From: alice@example.com\r\n' +
  'X-Originating-IP: [10.1.2.3]\r\n' +
  'received: from laptop.corp.example\r\n' +
  'Subject: Received: is not a field here\r\n' +
  '\r\n' +
  'Received: in the body stays\r\nbye\r\n';
const want = 'From: alice@example.com\r\nSubject: Received: is not a field here\r\n\r\nReceived: in the body stays\r\nbye\r\n';

async function strip(chunks: Buffer[], names = ['Received', 'X-Originating-IP']): Promise<string> {
  return text(pipeline(Readable.from(chunks), new HeaderStripper(names), () => undefined));
}

test('named header fields go, with their continuation lines, at every split offset; the body is untouched', async () => {
  const b = Buffer.from(msg);
  assert.equal(await strip([b]), want);
  for (let k = 1; k < b.length; k++) assert.equal(await strip([b.subarray(0, k), b.subarray(k)]), want, `split at ${k}`);
  assert.equal(await strip([...b].map((x) => Buffer.from([x]))), want, '1-byte chunks');
});

test('LF line endings, a message without a body, and no names at all', async () => {
  assert.equal(await strip([Buffer.from('Received: x\nFrom: a\n\nbody\n')]), 'From: a\n\nbody\n');
  assert.equal(await strip([Buffer.from('Received: x\r\nFrom: a\r\n')]), 'From: a\r\n');
  assert.equal(await strip([Buffer.from(msg)], []), msg);
});

test('the body after the header is passed on as a view of the chunk it came in, not a copy', async () => {
  const chunk = Buffer.from(msg);
  const out: Buffer[] = [];
  const s = new HeaderStripper(['Received']);
  s.on('data', (d: Buffer) => out.push(d));
  await new Promise<void>((resolve) => {
    s.on('end', resolve);
    s.end(chunk);
  });
  const body = out[1]!;
  assert.equal(body.buffer, chunk.buffer, 'same memory');
  assert.equal(body.byteOffset, chunk.byteOffset + chunk.indexOf('\r\n\r\n') + 2);
});

test('authserv-id: the first token of the value, after comments, any case', () => {
  assert.equal(authservId('Authentication-Results: mx.example.com; spf=pass'), 'mx.example.com');
  assert.equal(authservId('Authentication-Results: (note (nested)) MX.Example.Com 1; none'), 'mx.example.com');
  assert.equal(authservId('Authentication-Results:\r\n\tmx.example.com;\r\n dkim=pass'), 'mx.example.com');
  assert.equal(authservId('Authentication-Results: ;'), '');
});

test('inward: the fields moat added (keepFirst) stay; stored results naming this host and forged tags go, at every split offset', async () => {
  const ours = 'Authentication-Results: mx.example.com; dkim=none\r\nX-Spam-Score: 1.0\r\n';
  const stored =
    'Received: from sender.example by mx.example.com\r\n' +
    'Authentication-Results: MX.EXAMPLE.COM;\r\n dkim=pass header.d=bank.example\r\n' +
    'Authentication-Results: relay.other.example; spf=pass\r\n' +
    'X-Spam-Score: -50\r\n' +
    'Subject: hi\r\n\r\nAuthentication-Results: mx.example.com; in the body stays\r\n';
  const want =
    ours + 'Received: from sender.example by mx.example.com\r\nAuthentication-Results: relay.other.example; spf=pass\r\nSubject: hi\r\n\r\nAuthentication-Results: mx.example.com; in the body stays\r\n';
  const b = Buffer.from(ours + stored);
  const run = (chunks: Buffer[]) =>
    text(pipeline(Readable.from(chunks), new HeaderStripper(['X-Spam-Score'], { keepFirst: ours.length, drop: forgedResultsOf('mx.example.com') }), () => undefined));
  assert.equal(await run([b]), want);
  for (let k = 1; k < b.length; k++) assert.equal(await run([b.subarray(0, k), b.subarray(k)]), want, `split at ${k}`);
});
