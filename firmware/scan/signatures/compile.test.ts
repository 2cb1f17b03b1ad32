// The compiled scanner: every construct, matches straddling chunk boundaries at
// every offset and in 1- and 2-byte chunks, EICAR anywhere, no false positives
// with 1 000 random signatures, reload, and property tests against a slow
// reference matcher (an .ndb signature turned into a regular expression over
// the whole buffer) for random signature sets and random chunkings.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { compileSignatures } from './compile.ts';
import { EICAR, EICAR_BYTES } from './load.ts';
import type { BodySignature, SignatureDb } from './types.ts';
import { base64Data, mailData, prng, randomData, randomSignatures, textData } from '../../../scripts/bench/sigdata.ts';

const set = (body: BodySignature[]) => ({ body, hashes: [], warnings: [] });
const sig = (name: string, hex: string, offset: BodySignature['offset'] = '*'): BodySignature => ({ name, hex, offset });
const L = (s: string) => Buffer.from(s, 'latin1');

// ---- the reference: obviously correct, slow ----

const esc = (b: number) => `\\x${b.toString(16).padStart(2, '0')}`;
const cls = (bytes: number[]) => `[${bytes.map(esc).join('')}]`;

/** An .ndb hex signature as a RegExp source over latin1 text. */
function toRegExp(hex: string): string {
  let out = '';
  const h = hex.toLowerCase();
  for (let p = 0; p < h.length; ) {
    const c = h[p]!;
    if (c === '*') {
      out += '[\\s\\S]*';
      p++;
    } else if (c === '{' || c === '[') {
      const q = h.indexOf(c === '{' ? '}' : ']', p);
      const [a, b] = h.slice(p + 1, q).split('-');
      out += b === undefined ? `[\\s\\S]{${a}}` : `[\\s\\S]{${a || 0},${b}}`;
      p = q + 1;
    } else if (c === '(') {
      const q = h.indexOf(')', p);
      out += `(?:${h.slice(p + 1, q).split('|').map((alt) => alt.match(/../g)!.map((x) => esc(parseInt(x, 16))).join('')).join('|')})`;
      p = q + 1;
    } else {
      const d = h[p + 1]!;
      const all = Array.from({ length: 256 }, (_, i) => i);
      if (c === '?' && d === '?') out += '[\\s\\S]';
      else if (c === '?') out += cls(all.filter((x) => (x & 15) === parseInt(d, 16)));
      else if (d === '?') out += cls(all.filter((x) => x >> 4 === parseInt(c, 16)));
      else out += esc(parseInt(c + d, 16));
      p += 2;
    }
  }
  return out;
}

/** Does the signature occur in data (with its offset rule)? */
function refMatches(s: BodySignature, data: Buffer): boolean {
  const text = data.toString('latin1');
  const src = toRegExp(s.hex);
  const off = s.offset ?? '*';
  if (off === '*') return new RegExp(src).test(text);
  const [lo, hi] = typeof off === 'number' ? [off, off] : [off[0], off[0] + off[1]];
  const re = new RegExp(src, 'y');
  for (let at = lo; at <= Math.min(hi, text.length); at++) {
    re.lastIndex = at;
    if (re.test(text)) return true;
  }
  return false;
}

function chunked(data: Buffer, cuts: number[]): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  for (const c of [...cuts].sort((a, b) => a - b)) {
    out.push(data.subarray(at, c));
    at = c;
  }
  out.push(data.subarray(at));
  return out;
}

function scan(db: SignatureDb, chunks: Buffer[]): string | null {
  const sc = db.newScanner();
  let r: string | null = null;
  for (const c of chunks) r = sc.push(c);
  assert.equal(sc.end(), r);
  return r;
}

function bySize(data: Buffer, n: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < data.length; i += n) out.push(data.subarray(i, i + n));
  return out;
}

// ---- constructs ----

test('every construct matches what it should and nothing else', async () => {
  const cases: Array<[string, string[], string[]]> = [
    // hex, inputs that match, inputs that do not
    ['41424344', ['ABCD', 'xxABCDyy'], ['ABCd', 'ABC', 'BCD']],
    ['4142??4344', ['AB_CD', 'AB\x00CD'], ['ABCD', 'AB__CD']],
    ['41424?4344', ['ABJCD', 'AB@CD', 'ABOCD'], ['ABPCD', 'AB?CD']],
    ['4142?44344', ['ABDCD', 'ABtCD', 'AB$CD'], ['ABECD']],
    ['4142*4344', ['ABCD', 'AB...CD', 'ABCDCD'], ['ACDB', 'CDAB', 'AB']],
    ['4141*4142', ['AAAB', 'AA_AB'], ['AAB', 'ABAA']], // the earliest end of a part counts, not the latest
    ['41414141{1-2}4142', ['AAAAAAAB', 'AAAAA_AB', 'AAAAAAAAAB'], ['AAAAAB', 'AAAA___AB']],
    ['4142{3}4344', ['AB123CD'], ['AB12CD', 'AB1234CD']],
    ['4142{20}4344', [`AB${'x'.repeat(20)}CD`], [`AB${'x'.repeat(19)}CD`, `AB${'x'.repeat(21)}CD`]],
    ['4142{2-4}4344', ['AB12CD', 'AB123CD', 'AB1234CD'], ['AB1CD', 'AB12345CD']],
    ['4142{-2}4344', ['ABCD', 'AB1CD', 'AB12CD'], ['AB123CD']],
    ['4142{2-}4344', ['AB12CD', `AB${'y'.repeat(500)}CD`], ['ABCD', 'AB1CD']],
    ['4142[1-2]4344', ['AB1CD', 'AB12CD'], ['ABCD', 'AB123CD']],
    ['41(4243|58)44', ['ABCD', 'AXD'], ['ABD', 'AXCD', 'ACD']],
    ['(4142|5859)4344', ['ABCD', 'XYCD'], ['AYCD']],
    ['4142(43|44)(45|46)4748', ['ABCEGH', 'ABDFGH'], ['ABCGH', 'ABCDEFGH']],
    ['4142{2-4}4344*4546{-1}4748', ['AB12CD..EFGH', 'AB12CDEF_GH'], ['AB12CDEF__GH', 'AB1CD..EFGH']],
    [`${'61'.repeat(150)}*6263`, [`${'a'.repeat(150)}bc`, `${'a'.repeat(152)}xbc`], [`${'a'.repeat(149)}bc`]],
  ];
  for (const [hex, yes, no] of cases) {
    const db = await compileSignatures(set([sig('S', hex)]));
    for (const y of yes) {
      assert.ok(refMatches(sig('S', hex), L(y)), `reference: ${hex} in ${y}`);
      for (const cs of [1, 2, 3, 1000]) assert.equal(scan(db, bySize(L(y), cs)), 'S', `${hex} in ${JSON.stringify(y)} (chunks of ${cs})`);
    }
    for (const n of no) {
      assert.ok(!refMatches(sig('S', hex), L(n)), `reference: ${hex} not in ${n}`);
      for (const cs of [1, 2, 3, 1000]) assert.equal(scan(db, bySize(L(n), cs)), null, `${hex} not in ${JSON.stringify(n)} (chunks of ${cs})`);
    }
  }
});

test('offsets: exact and ranges count from the start of the stream, and again after reset', async () => {
  const db = await compileSignatures(set([sig('At3', '41424344', 3), sig('In5to7', '5a5a5a', [5, 2]), sig('Gap0', '7879*7a7a', 0)]));
  const sc = db.newScanner();
  for (const [data, want] of [
    ['...ABCD', 'At3'],
    ['..ABCD', null],
    ['....ABCD', null],
    ['.....ZZZ', 'In5to7'],
    ['.......ZZZ', 'In5to7'],
    ['........ZZZ', null],
    ['....ZZZ', null],
    ['xy....zz', 'Gap0'],
    ['.xy....zz', null],
  ] as const) {
    for (const cs of [1, 2, 100]) {
      sc.reset();
      let r: string | null = null;
      for (const c of bySize(L(data), cs)) r = sc.push(c);
      assert.equal(r, want, `${data} in chunks of ${cs}`);
    }
  }
});

test('push takes a range of a chunk; a bad range is a RangeError', async () => {
  const db = await compileSignatures(set([EICAR]));
  const buf = Buffer.concat([L('x'.repeat(100)), EICAR_BYTES, L('y'.repeat(100))]);
  assert.equal(db.newScanner().push(buf, 0, 167), null);
  assert.equal(db.newScanner().push(buf, 101, 200), null);
  assert.equal(db.newScanner().push(buf, 100, 168), 'Eicar-Test-Signature');
  const sc = db.newScanner();
  assert.equal(sc.push(buf, 0, 130), null);
  assert.equal(sc.push(buf, 130, 168), 'Eicar-Test-Signature', 'the range continues the stream');
  assert.equal(sc.push(L('clean')), 'Eicar-Test-Signature', 'sticky');
  assert.equal(sc.end(), 'Eicar-Test-Signature');
  sc.reset();
  assert.equal(sc.push(L('clean')), null);
  for (const [a, b] of [[-1, 5], [0, 1000], [10, 5], [0.5, 3]] as const) assert.throws(() => sc.push(buf, a, b), RangeError);
  assert.throws(() => sc.push(new Uint8Array(4) as Buffer), TypeError);
  assert.equal(sc.push(L('clean')), null, 'the scanner still works after refusing bad calls');
});

test('a match straddling a chunk boundary at every offset, and in 1- and 2-byte chunks', async () => {
  const sigs = [EICAR, sig('Gapped', '4d5a{2-6}50450000*2e74657874{-3}0000'), sig('Short', '7f45??4c46')];
  const db = await compileSignatures(set(sigs));
  assert.deepEqual(db.warnings, []);
  const bodies: Array<[string, Buffer]> = [
    ['Eicar-Test-Signature', EICAR_BYTES],
    ['Gapped', L('MZ\x90\x00\x03PE\x00\x00.....padding......text\x01\x00\x00')],
    ['Short', L('\x7fEzLF')],
  ];
  for (const [name, body] of bodies) {
    const data = Buffer.concat([L('Content-Type: text/plain\r\n\r\nsome text '), body, L(' and more\r\n')]);
    assert.ok(refMatches(sigs.find((s) => s.name === name)!, data));
    for (let k = 0; k <= data.length; k++) assert.equal(scan(db, chunked(data, [k])), name, `${name} split at ${k}`);
    for (let k = 0; k + 1 < data.length; k += 3) {
      for (let j = k + 1; j < Math.min(data.length, k + 80); j += 5) assert.equal(scan(db, chunked(data, [k, j])), name, `${name} split at ${k} and ${j}`);
    }
    assert.equal(scan(db, bySize(data, 1)), name, `${name} in 1-byte chunks`);
    assert.equal(scan(db, bySize(data, 2)), name, `${name} in 2-byte chunks`);
    const cut = Buffer.concat([data.subarray(0, data.indexOf(body) + 1), data.subarray(data.indexOf(body) + 2)]);
    assert.equal(scan(db, bySize(cut, 1)), null, `${name} with a byte missing`);
  }
});

test('EICAR is found at random places in random data, whatever the chunking', async () => {
  const db = await compileSignatures(set([EICAR]));
  const noise = randomData(300_000, 77);
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 0, max: noise.length }), fc.array(fc.integer({ min: 0, max: noise.length + 68 }), { maxLength: 6 }), async (at, cuts) => {
      const data = Buffer.concat([noise.subarray(0, at), EICAR_BYTES, noise.subarray(at)]);
      assert.equal(scan(db, chunked(data, cuts)), 'Eicar-Test-Signature');
      assert.equal(scan(db, chunked(noise, cuts.filter((c) => c <= noise.length))), null);
    }),
    { numRuns: 60 },
  );
});

// ---- no false positives, and every planted signature found ----

/** The fixed pieces of a hex signature without alternations. */
const pieces = (hex: string) => hex.split(/\?\?|\*|\{[^}]*\}/).filter((p) => p.length >= 4).map((p) => Buffer.from(p, 'hex'));

test('1 000 random signatures planted nowhere: no match in random, base64, text and mail-like data; each found where planted', async () => {
  const corpus = Buffer.concat([randomData(1 << 20, 11), base64Data(1 << 20, 12), textData(1 << 20, 13), mailData(1 << 20, 14)]);
  const all = [...randomSignatures(500, 21, 'binary'), ...randomSignatures(500, 22, 'text')].map((s, i) => ({ ...s, name: `R${i}` }));
  // keep only those that cannot occur: some fixed piece is absent from the corpus
  const sigs = all.filter((s) => pieces(s.hex).some((p) => corpus.indexOf(p) < 0));
  assert.ok(sigs.length >= 900, `${sigs.length} signatures are absent from the corpus`);
  const db = await compileSignatures(set(sigs));
  assert.equal(db.bodyCount, sigs.length);
  assert.deepEqual(db.warnings, []);
  for (const cs of [65536, 16384 + 7, 1500]) assert.equal(scan(db, bySize(corpus, cs)), null, `chunks of ${cs}`);
  // plant each of 100 of them (wildcards filled in) in the corpus: found, by its own name
  const r = prng(99);
  for (let i = 0; i < sigs.length; i += Math.ceil(sigs.length / 100)) {
    const s = sigs[i]!;
    const body = Buffer.from(s.hex.replace(/\?\?/g, '5f').replace(/\{-20\}|\{2-8\}|\*/g, '5f5f'), 'hex');
    assert.ok(refMatches(s, body), `planted ${s.name} is an instance`);
    const at = Math.floor(r() * corpus.length);
    const data = Buffer.concat([corpus.subarray(at - (at % 4096), at), body, corpus.subarray(at, at + 100_000)]);
    assert.equal(scan(db, bySize(data, 65536)), s.name, `${s.name} planted`);
  }
});

test('hostile input cannot grow the state of gapped signatures beyond its limits, and recent partial matches still count', async () => {
  const { MAX_INTERVALS, MAX_LIVE } = await import('./compile.ts');
  type Probe = ReturnType<SignatureDb['newScanner']> & { pending: number };
  const run = (db: SignatureDb, data: Buffer) => {
    const sc = db.newScanner() as Probe;
    let most = 0;
    for (const c of bySize(data, 65536)) {
      assert.equal(sc.push(c), null);
      most = Math.max(most, sc.pending);
    }
    return { sc, most };
  };
  // one signature "aA" {200000} "BB", "aA" every 3 bytes: one chain at its limit
  const one = await compileSignatures(set([sig('G', '6141{200000}4242')]));
  const r1 = run(one, L('aAx'.repeat(100_000)));
  assert.equal(r1.most, MAX_INTERVALS, 'one chain keeps at most MAX_INTERVALS');
  // 20 such signatures, interleaved: the scanner-wide limit
  const sigs = Array.from({ length: 20 }, (_, i) => sig(`G${i}`, `61${(0x41 + i).toString(16)}{200000}4242`));
  const db = await compileSignatures(set(sigs));
  const cycle = sigs.map((_, i) => `a${String.fromCharCode(0x41 + i)}x`).join('');
  const { sc, most } = run(db, L(cycle.repeat(Math.ceil(1_500_000 / cycle.length))));
  assert.ok(most <= MAX_LIVE && most > MAX_LIVE - 20, `${most} intervals kept, at most ${MAX_LIVE}`);
  assert.equal(sc.push(L(`aC${'y'.repeat(200_000)}BB`)), 'G2', 'a recent partial match still completes');
  // without the flood, intervals that can no longer be reached are let go
  const calm = run(await compileSignatures(set([sig('H', '6141{1000}4242')])), L(`aA${'x'.repeat(57)}`.repeat(10_000)));
  assert.ok(calm.most <= 1000 / 59 + 2, `${calm.most} intervals kept for a gap of 1000`);
});

test('hostile input cannot grow the collected part occurrences beyond MAX_EVENTS; a real match is still found', async () => {
  const { MAX_EVENTS } = await import('./compile.ts');
  // 40 signatures whose first part "AA" is everywhere in the data, each followed within 5 bytes by its own part
  const sigs = Array.from({ length: 40 }, (_, i) => sig(`E${i}`, `4141{-5}7a${(0x41 + i).toString(16)}7a`));
  const db = await compileSignatures(set(sigs));
  const sc = db.newScanner() as ReturnType<SignatureDb['newScanner']> & { scratch: number };
  for (const c of bySize(L('A'.repeat(1 << 20)), 65536)) assert.equal(sc.push(c), null);
  assert.ok(sc.scratch <= MAX_EVENTS, `${sc.scratch} slots for part occurrences`);
  assert.ok(40 * 65536 > MAX_EVENTS, 'the flood was larger than the limit');
  assert.equal(sc.push(L('AAAAzCz')), 'E2');
  // open gaps: the first part is recorded on the spot, nothing is collected for it
  const open = await compileSignatures(set(Array.from({ length: 40 }, (_, i) => sig(`O${i}`, `4141*7a${(0x41 + i).toString(16)}7a`))));
  const so = open.newScanner() as ReturnType<SignatureDb['newScanner']> & { scratch: number };
  for (const c of bySize(L('A'.repeat(1 << 20)), 65536)) assert.equal(so.push(c), null);
  assert.equal(so.scratch, 256, 'the initial room was never grown');
  assert.equal(so.push(L('..zDz')), 'O3');
});

// ---- reload ----

test('reload: a new database is separate, and scanners of the old one keep working', async () => {
  const a = await compileSignatures(set([sig('Old', '6f6c64736967')]));
  const old = a.newScanner();
  assert.equal(old.push(L('... olds')), null);
  const b = await compileSignatures(set([sig('New', '6e65777369676e')]));
  assert.equal(old.push(L('ig ...')), 'Old', 'the old scanner finishes its stream with the old set');
  const fresh = b.newScanner();
  assert.equal(fresh.push(L('... oldsig ...')), null);
  assert.equal(fresh.push(L('newsign')), 'New');
  assert.equal(a.bodyCount, 1);
  assert.equal(b.bodyCount, 1);
});

test('two compilations at once (their slices interleave) give two working databases', async () => {
  const a = randomSignatures(3000, 31);
  const b = randomSignatures(40, 32);
  const [da, dbb] = await Promise.all([compileSignatures(set(a)), compileSignatures(set(b))]);
  for (const [db, sigs] of [[da, a], [dbb, b]] as const) {
    for (const s of [sigs[0]!, sigs[sigs.length - 1]!]) {
      const body = Buffer.from(s.hex.replace(/\?\?/g, '5f').replace(/\{-20\}|\{2-8\}|\*/g, '5f5f'), 'hex');
      assert.equal(scan(db, bySize(Buffer.concat([randomData(70_000, 3), body]), 65536)), s.name);
    }
  }
});

test('malformed signatures given to compile are errors naming them; unusable ones are counted', async () => {
  await assert.rejects(compileSignatures(set([sig('Bad.One', '41424x')])), /body signature Bad\.One: unexpected character "x"/);
  await assert.rejects(compileSignatures({ body: [], hashes: [{ name: 'H', kind: 'md5', digest: 'ABC', size: 1 }], warnings: [] }), /hash signature H: md5 digest must be 32 lowercase hex/);
  const db = await compileSignatures(set([EICAR, sig('Neg', '4142!(43)4445'), sig('Neg2', '4142!(43)4445'), sig('Lead', '*41424344')]));
  assert.equal(db.bodyCount, 1, 'only EICAR is in use');
  assert.deepEqual(db.warnings, ['2 body signature(s) left out: negated alternation !(…) (first: Neg)', '1 body signature(s) left out: leading or trailing gap (first: Lead)']);
  const empty = await compileSignatures(set([]));
  assert.equal(empty.newScanner().push(EICAR_BYTES), null);
  assert.equal(empty.hashKinds.size, 0);
});

// ---- properties against the reference ----

const ALPHA = [0x41, 0x42, 0x43, 0x61];

/** A random valid signature over a small alphabet, so that matches happen. */
const arbSig = fc
  .record({
    parts: fc.array(
      fc.record({
        lit: fc.array(fc.constantFrom(...ALPHA), { minLength: 2, maxLength: 10 }),
        extra: fc.array(
          fc.oneof(
            fc.constant('??'),
            fc.constant('4?'),
            fc.constant('?1'),
            fc.constant('(41|4243)'),
            fc.constant('(61|43)'),
            fc.constantFrom(...ALPHA).map((b) => b.toString(16)),
          ),
          { maxLength: 3 },
        ),
      }),
      { minLength: 1, maxLength: 3 },
    ),
    gaps: fc.array(fc.oneof(fc.constant('*'), fc.constant('{2}'), fc.constant('{1-3}'), fc.constant('{-2}'), fc.constant('{2-}'), fc.constant('{20}'), fc.constant('{0-25}')), {
      minLength: 2,
      maxLength: 2,
    }),
    offset: fc.oneof(fc.constant('*' as const), fc.integer({ min: 0, max: 6 }), fc.tuple(fc.integer({ min: 0, max: 6 }), fc.integer({ min: 0, max: 8 }))),
  })
  .map(({ parts, gaps, offset }) => {
    const hex = parts
      .map((p, i) => (i > 0 ? gaps[i - 1]! : '') + p.lit.map((b) => b.toString(16)).join('') + p.extra.join('') + p.lit.slice(0, 2).map((b) => b.toString(16)).join(''))
      .join('');
    return { hex, offset };
  });

function checkPrefixes(db: SignatureDb, sigs: BodySignature[], data: Buffer, cuts: number[]): void {
  const sc = db.newScanner();
  let seen = 0;
  for (const c of chunked(data, cuts)) {
    const r = sc.push(c);
    seen += c.length;
    const prefix = data.subarray(0, seen);
    const matching = new Set(sigs.filter((s) => refMatches(s, prefix)).map((s) => s.name));
    if (r === null) assert.equal(matching.size, 0, `missed ${[...matching].join(',')} after ${seen} bytes`);
    else assert.ok(matching.has(r), `${r} reported after ${seen} bytes but does not match there`);
  }
}

test('property: after every chunk, the scanner agrees with the reference on the data so far', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(arbSig, { minLength: 1, maxLength: 6 }),
      fc.array(fc.constantFrom(0x41, 0x42, 0x43, 0x61, 0x44, 0x51), { maxLength: 160 }),
      fc.array(fc.nat(), { maxLength: 12 }),
      async (raw, bytes, cutSeeds) => {
        const sigs = raw.map((s, i) => sig(`P${i}`, s.hex, s.offset));
        const db = await compileSignatures(set(sigs));
        const data = Buffer.from(bytes);
        checkPrefixes(db, sigs, data, cutSeeds.map((c) => c % (data.length + 1)));
      },
    ),
    { numRuns: 400 },
  );
});

test('property: large chunks (interleaved scan) with long and short signatures planted in random data', async () => {
  const noise = randomData(40_000, 5);
  await fc.assert(
    fc.asyncProperty(
      fc.array(arbSig, { minLength: 1, maxLength: 4 }),
      fc.array(fc.uint8Array({ minLength: 8, maxLength: 24 }), { minLength: 1, maxLength: 3 }),
      fc.array(fc.tuple(fc.nat(), fc.nat()), { maxLength: 8 }),
      fc.array(fc.nat(), { maxLength: 3 }),
      async (raw, longs, plants, cutSeeds) => {
        const sigs = [
          ...raw.map((s, i) => sig(`P${i}`, s.hex, s.offset)),
          ...longs.map((l, i) => sig(`L${i}`, `${Buffer.from(l).toString('hex')}*${Buffer.from(l).subarray(0, 4).toString('hex')}`)),
        ];
        const db = await compileSignatures(set(sigs));
        // plant fixed bytes of the signatures (with wildcards as found) at chosen places
        let data = Buffer.from(noise);
        for (const [which, where] of plants) {
          const s = sigs[which % sigs.length]!;
          const body = Buffer.from(
            s.hex
              .replace(/\((\w+)\|[^)]*\)/g, '$1')
              .replace(/\?\?|\{2\}|\{1-3\}|\{2-\}|\{20\}|\{0-25\}|\{-2\}|\*/g, (m) => (m === '{20}' ? '44'.repeat(20) : m === '{2}' || m === '{2-}' ? '4444' : m === '??' ? '44' : '44'))
              .replace(/([0-9a-f])\?/g, '$10')
              .replace(/\?([0-9a-f])/g, '0$1'),
            'hex',
          );
          const at = where % data.length;
          data = Buffer.concat([data.subarray(0, at), body, data.subarray(at)]);
        }
        const cuts = cutSeeds.map((c) => c % (data.length + 1));
        const chunks = chunked(data, cuts);
        const r = scan(db, chunks);
        const matching = new Set(sigs.filter((s) => refMatches(s, data)).map((s) => s.name));
        if (r === null) assert.equal(matching.size, 0, `missed ${[...matching].join(',')}`);
        else assert.ok(matching.has(r), `${r} does not match`);
      },
    ),
    { numRuns: 150 },
  );
});
