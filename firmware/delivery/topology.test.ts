import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { pipeline } from 'node:stream';
import { HeaderStripper } from './topology.ts';

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
