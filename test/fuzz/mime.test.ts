// Fuzzing the streaming MIME walker (firmware/scan/mime.ts) with mutations of a corpus of
// real messages built by nodemailer's MailComposer: nested multiparts (mixed, alternative,
// related, an attached message), base64, quoted-printable, 8bit and binary-ish content,
// then bytes flipped, cut, repeated, boundaries broken and lines inserted. Whatever comes in:
// no throw, the same parts and verdict for any chunking, never more parts or depth than the
// limits, never more decoded bytes than input bytes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import MailComposer from 'nodemailer/lib/mail-composer/index.js';
import { walk, checkMime as check } from './properties.ts';
import { fuzzParams } from './settings.ts';


function compose(mail: ConstructorParameters<typeof MailComposer>[0]): Promise<Buffer> {
  return new MailComposer(mail).compile().build();
}
const bin = Buffer.from(Array.from({ length: 1500 }, (_, i) => (i * 7919) & 255));
const base = { from: 'Alice <alice@example.net>', to: 'bob@example.com', subject: 'Grüße, ünïcödé subject' };
const inner = await compose({ ...base, subject: 'inner', text: 'inner text', attachments: [{ filename: 'in.bin', content: bin.subarray(0, 300) }] });
const corpus: Buffer[] = [
  await compose({ ...base, text: 'hello\r\n--not a boundary\r\n.\r\nbye' }),
  await compose({ ...base, text: 'Grüße '.repeat(40), textEncoding: 'quoted-printable' }),
  await compose({ ...base, text: 'plain', html: '<p>html</p>' }),
  await compose({ ...base, text: 'see attached', html: '<p>see <img src="cid:logo"></p>', attachments: [{ filename: 'a.bin', content: bin }, { filename: 'logo.png', content: bin.subarray(0, 200), cid: 'logo' }, { filename: 'notes.txt', content: 'line\r\n'.repeat(30), contentTransferEncoding: 'quoted-printable' }] }),
  await compose({ ...base, text: 'forwarded', attachments: [{ filename: 'fwd.eml', content: inner, contentType: 'message/rfc822' }] }),
  await compose({ ...base, text: 'Ÿ'.repeat(100), textEncoding: 'base64', attachments: [{ filename: 'x.txt', content: 'x'.repeat(2000), contentTransferEncoding: '7bit' }] }),
];

/** Mutations of a message: each a function of the message and random numbers. */
type Mutation = (m: Buffer, a: number, b: number, byte: number) => Buffer;
const boundaryOf = (m: Buffer) => /boundary="?([^";\r\n]+)/.exec(m.toString('latin1'))?.[1] ?? '--';
const mutations: Mutation[] = [
  (m, a, _b, byte) => Buffer.concat([m.subarray(0, a % m.length), Buffer.from([byte]), m.subarray((a % m.length) + 1)]), // flip a byte
  (m, a, b) => Buffer.concat([m.subarray(0, a % m.length), m.subarray(Math.min(m.length, (a % m.length) + (b % 400)))]), // cut a range
  (m, a, b) => Buffer.concat([m.subarray(0, a % m.length), m.subarray(a % m.length, (a % m.length) + (b % 300)), m.subarray(a % m.length)]), // repeat a range
  (m, a) => m.subarray(0, a % m.length), // truncated
  (m, a, b) => {
    const bd = boundaryOf(m); // a boundary broken: one character changed, or its closing dashes dropped
    const s = m.toString('latin1');
    const hits = [...s.matchAll(new RegExp(`--${bd.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`, 'g'))];
    if (!hits.length) return m;
    const h = hits[a % hits.length]!;
    const at = h.index! + 2 + (b % bd.length);
    return Buffer.concat([m.subarray(0, at), Buffer.from(b % 2 ? 'X' : ''), m.subarray(at + 1)]);
  },
  (m, a, b) => {
    const lines = ['\r\n--' + boundaryOf(m) + '\r\n', '\r\n--' + boundaryOf(m) + '--\r\n', '\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\n', '\r\nContent-Transfer-Encoding: base64\r\n\r\n', '\n.\n', '\r\n=\r\n=4', '\r\n' + 'a'.repeat(5000), '\r\n\t folded: header\r\n', '\r\n--\r\n'];
    const at = a % m.length;
    return Buffer.concat([m.subarray(0, at), Buffer.from(lines[b % lines.length]!, 'latin1'), m.subarray(at)]);
  },
  (m) => Buffer.from(m.toString('latin1').replace(/\r\n/g, '\n'), 'latin1'), // bare LF
  (m, a) => Buffer.concat(Array.from({ length: 2 + (a % 6) }, () => m)), // the message several times
];
const mutation = fc.tuple(fc.nat(mutations.length - 1), fc.nat(), fc.nat(), fc.integer({ min: 0, max: 255 }));
const sample = fc.tuple(fc.nat(corpus.length - 1), fc.array(mutation, { minLength: 0, maxLength: 4 }), fc.array(fc.nat(), { maxLength: 12 }));

function mutate(i: number, ms: Array<[number, number, number, number]>): Buffer {
  let m = corpus[i]!;
  for (const [k, a, b, byte] of ms) if (m.length) m = mutations[k]!(m, a, b, byte);
  return m;
}

test('MIME walker: the unmutated corpus walks to its parts the same for any chunking', () => {
  for (const m of corpus) {
    const s = walk(m, []);
    assert.equal(s.verdict, null);
    assert.ok(s.parts.length >= 1);
    check(m, [1, 2, 3, 17, 64, 65, 1000]);
  }
});

test('MIME walker: mutated real messages never throw, stay within the limits and walk the same for any chunking', () => {
  fc.assert(
    fc.property(sample, ([i, ms, cuts]) => check(mutate(i, ms), cuts)),
    fuzzParams(400),
  );
});

test('MIME walker: byte-by-byte feeding of mutated messages gives the same result', () => {
  fc.assert(
    fc.property(sample, ([i, ms]) => {
      const m = mutate(i, ms).subarray(0, 4000);
      check(m, Array.from({ length: m.length }, (_, k) => k));
    }),
    fuzzParams(30),
  );
});
