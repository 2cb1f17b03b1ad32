// The scan chain, the smuggling guard and the size stage, fed every fixture
// split at every offset and in 1- and 2-byte chunks (STYLE 12).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Chain, type Stage, type Verdict } from './pipeline.ts';
import { GuardStage, MAX_LINE, bareLineEndingsText, longLineText, type GuardOptions } from './guard.ts';
import { SizeStage, tooBigText } from './size.ts';

const b = (s: string) => Buffer.from(s, 'latin1');
const line = (n: number) => 'x'.repeat(n);
const NEXT = 'MAIL FROM:<evil@x.example>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nhi\r\n';
const SMUGGLE = ['\n.\n', '\r.\n', '\n.\r\n', '\r\n.\n', '\r.\r', '\r\n.\r'];

type Expect = null | 'bare' | 'long';
const fixtures: Array<{ name: string; data: string; expect: Expect }> = [
  { name: 'empty', data: '', expect: null },
  { name: 'plain', data: 'From: a@b.example\r\nSubject: hi\r\n\r\nbody\r\n.starts with a dot\r\n\r\n', expect: null },
  { name: '8-bit and NUL', data: 'Subject: x\r\n\r\n\xe9\xff\x00\r\n', expect: null },
  ...SMUGGLE.map((s) => ({ name: `smuggling ${JSON.stringify(s)}`, data: `Subject: x\r\n\r\nbody${s}${NEXT}`, expect: 'bare' as const })),
  { name: 'bare LF first', data: '\nSubject: x\r\n', expect: 'bare' },
  { name: 'bare LF last', data: 'Subject: x\n', expect: 'bare' },
  { name: 'bare CR last', data: 'Subject: x\r', expect: 'bare' },
  { name: 'CR CR LF', data: 'Subject: x\r\r\n', expect: 'bare' },
  { name: 'LF CR', data: 'a\r\n\n\r\n', expect: 'bare' },
  { name: 'bare CR mid-line', data: 'a\rb\r\n', expect: 'bare' },
  { name: `line of ${MAX_LINE}`, data: `a\r\n${line(MAX_LINE)}\r\nb\r\n`, expect: null },
  { name: `line of ${MAX_LINE + 1}`, data: `a\r\n${line(MAX_LINE + 1)}\r\nb\r\n`, expect: 'long' },
  { name: `first line of ${MAX_LINE + 1}`, data: `${line(MAX_LINE + 1)}\r\n`, expect: 'long' },
  { name: `last line of ${MAX_LINE} without CRLF`, data: `a\r\n${line(MAX_LINE)}`, expect: null },
  { name: `last line of ${MAX_LINE + 1} without CRLF`, data: `a\r\n${line(MAX_LINE + 1)}`, expect: 'long' },
  { name: `line of ${MAX_LINE} + bare CR before CRLF`, data: `${line(MAX_LINE)}\r\r\n`, expect: 'bare' },
];

function splits(data: Buffer): Array<{ how: string; chunks: Buffer[] }> {
  const out: Array<{ how: string; chunks: Buffer[] }> = [{ how: 'whole', chunks: [data] }];
  for (let i = 0; i <= data.length; i++) out.push({ how: `split at ${i}`, chunks: [data.subarray(0, i), data.subarray(i)] });
  for (const size of [1, 2]) {
    const chunks: Buffer[] = [];
    for (let i = 0; i < data.length; i += size) chunks.push(data.subarray(i, i + size));
    out.push({ how: `${size}-byte chunks`, chunks });
  }
  return out;
}

function runStage(s: Stage, chunks: Buffer[]): Verdict | null {
  for (const c of chunks) s.push(c);
  return s.end();
}

/** The obvious byte-by-byte definition the guard must agree with: every kind of fault in the data. */
function faults(data: Buffer, o: GuardOptions): Set<Expect> {
  const out = new Set<Expect>();
  let len = 0;
  for (let i = 0; i < data.length; i++) {
    const c = data[i];
    if (o.bareLineEndings === 'reject') {
      if (c === 13 && data[i + 1] !== 10) out.add('bare');
      if (c === 10 && data[i - 1] !== 13) out.add('bare');
    }
    if (c === 10) {
      if (o.longLines === 'reject' && len - (data[i - 1] === 13 ? 1 : 0) > MAX_LINE) out.add('long');
      len = 0;
    } else len++;
  }
  if (o.longLines === 'reject' && len - (data[data.length - 1] === 13 ? 1 : 0) > MAX_LINE) out.add('long');
  return out;
}

/** What the guard must answer: null for clean data, else one of the faults (the first it meets). */
function oracle(data: Buffer, o: GuardOptions): Expect {
  const f = faults(data, o);
  return f.size === 0 ? null : f.size === 1 ? [...f][0]! : 'bare';
}

const kind = (v: Verdict | null): Expect => (v === null ? null : v.text === bareLineEndingsText ? 'bare' : v.text === longLineText ? 'long' : (assert.fail(`unexpected ${v.text}`) as never));

const allOptions: GuardOptions[] = [
  { bareLineEndings: 'reject', longLines: 'reject' },
  { bareLineEndings: 'normalise', longLines: 'reject' },
  { bareLineEndings: 'reject', longLines: 'accept' },
  { bareLineEndings: 'normalise', longLines: 'accept' },
];

test('guard: every fixture, split at every offset and in 1- and 2-byte chunks, gets the same verdict', () => {
  for (const f of fixtures) {
    const data = b(f.data);
    assert.equal(oracle(data, allOptions[0]!), f.expect, `oracle agrees on ${f.name}`);
    for (const o of allOptions) {
      const want = oracle(data, o);
      for (const { how, chunks } of splits(data)) {
        const v = runStage(new GuardStage(o), chunks);
        assert.equal(kind(v), want, `${f.name}, ${how}, ${JSON.stringify(o)}`);
        if (v) assert.equal(v.code, 550);
        if (v) assert.equal(v.stage, 'guard');
      }
    }
  }
});

test('guard: random data with many CR, LF and long lines agrees with the byte-by-byte definition', () => {
  let seed = 12345;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000);
  const alphabet = ['\r\n', '\r\n', '\r\n', '\r', '\n', 'a', 'bb', line(400), line(997)];
  for (let n = 0; n < 400; n++) {
    let s = '';
    const parts = 1 + Math.floor(rnd() * 12);
    for (let i = 0; i < parts; i++) s += alphabet[Math.floor(rnd() * alphabet.length)];
    const data = b(s);
    for (const o of allOptions) {
      const cuts = [0, Math.floor(rnd() * data.length), Math.floor(rnd() * data.length), data.length].sort((x, y) => x - y);
      const chunks = cuts.slice(1).map((c, i) => data.subarray(cuts[i], c));
      const got = kind(runStage(new GuardStage(o), chunks));
      const all = faults(data, o);
      assert.ok(all.size === 0 ? got === null : all.has(got), `${JSON.stringify(s.length > 80 ? s.replace(/x{20,}/g, (m) => `x*${m.length}`) : s)} ${JSON.stringify(o)} cut ${cuts}`);
    }
  }
});

test('size: refuses only over the limit, whatever the chunking', () => {
  const data = b('Subject: x\r\n\r\n' + line(86) + '\r\n');
  assert.equal(data.length, 102);
  for (const [limit, refused] of [[101, true], [102, false], [103, false]] as const) {
    for (const { how, chunks } of splits(data)) {
      const s = new SizeStage(limit);
      const v = runStage(s, chunks);
      assert.equal(s.bytes, data.length);
      if (refused) assert.deepEqual(v && { code: v.code, text: v.text, stage: v.stage }, { code: 552, text: tooBigText(limit), stage: 'size' }, `${limit}, ${how}`);
      else assert.equal(v, null, `${limit}, ${how}`);
    }
  }
  assert.match(tooBigText(5), /^5\.3\.4 /);
});

test('zero copy: the chain hands the sink the very Buffer objects it was given, in order', () => {
  const data = b('From: a@b.example\r\nSubject: hi\r\n\r\n' + 'Mail-like text, seventy-odd characters on a line, as mail has.\r\n'.repeat(200));
  for (const { how, chunks } of splits(data).filter((_, i) => i % 97 === 0)) {
    const sunk: Buffer[] = [];
    const chain = new Chain([new GuardStage(allOptions[0]!), new SizeStage(1 << 20)], (c) => (sunk.push(c), true));
    for (const c of chunks) chain.push(c);
    assert.equal(chain.end(), null, how);
    assert.equal(sunk.length, chunks.length, how);
    sunk.forEach((c, i) => assert.ok(c === chunks[i], `${how}: chunk ${i} is the same object`));
  }
});

test('chain: after a refusal the sink gets nothing more, the stream may go on, and the first verdict wins', () => {
  const sunk: Buffer[] = [];
  const seen: Buffer[] = [];
  const spy: Stage = { name: 'spy', verdict: null, push: (c) => void seen.push(c), end: () => ({ stage: 'spy', code: 554, text: '5.7.1 spy', reason: 'spy' }) };
  const chain = new Chain([new GuardStage(allOptions[0]!), new SizeStage(10), spy], (c) => (sunk.push(c), false));
  const ok = b('abc\r\n');
  const bad = b('x\ny');
  assert.equal(chain.push(ok), false, 'the sink\'s backpressure is passed back');
  assert.equal(chain.push(bad), true, 'a refused chunk asks for no pause');
  assert.equal(chain.push(b(line(100))), true);
  const v = chain.end();
  assert.equal(v?.stage, 'guard');
  assert.equal(v?.text, bareLineEndingsText);
  assert.deepEqual(sunk, [ok]);
  assert.ok(sunk[0] === ok);
  assert.deepEqual(seen, [ok], 'stages after the refusing one do not see the refused chunk');
  assert.equal(chain.end(), v, 'end is idempotent');

  const late = new Chain([new SizeStage(100), spy], () => true);
  late.push(b('hello'));
  assert.equal(late.end()?.stage, 'spy', 'a verdict given only at end counts');
});
