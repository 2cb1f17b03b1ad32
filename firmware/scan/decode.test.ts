import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Base64Decoder, nativeStats, QuotedPrintableDecoder } from './decode.ts';

/** Runs a decoder over `input` cut at the given offsets. */
function run(dec: Base64Decoder | QuotedPrintableDecoder, input: Buffer, cuts: number[]): Buffer {
  const out: Buffer[] = [];
  const scratch = Buffer.alloc(input.length + 16);
  let prev = 0;
  for (const c of [...new Set(cuts)].filter((x) => x > 0 && x < input.length).sort((a, b) => a - b).concat(input.length)) {
    const n = dec.decode(input, prev, c, scratch);
    out.push(Buffer.from(scratch.subarray(0, n)));
    prev = c;
  }
  const n = dec.end(scratch);
  out.push(Buffer.from(scratch.subarray(0, n)));
  return Buffer.concat(out);
}

const folded = (b64: string, width: number) => (width > 0 ? b64.replace(new RegExp(`.{1,${width}}`, 'g'), '$&\r\n') : b64);

test('base64: any data, any line width, any chunking decodes to the original', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), fc.integer({ min: 0, max: 80 }), fc.array(fc.nat(1000), { maxLength: 8 }), (data, width, cuts) => {
      const input = Buffer.from(folded(Buffer.from(data).toString('base64'), width));
      assert.ok(run(new Base64Decoder(), input, cuts).equals(Buffer.from(data)));
    }),
    { seed: 42, numRuns: 400 },
  );
});

test('base64: Node\'s decoder for plain line runs gives the very bytes of the byte loop, whatever is planted and however it is cut', () => {
  const plants = ['-', '_', '=', ' ', '\t', '\n', '\r', '*', '\x00', '\xff', '==', 'A', '\r\n'];
  const before = nativeStats.bytes;
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 2000, maxLength: 12_000 }),
      fc.constantFrom(76, 64, 72, 60, 4, 75, 0),
      fc.array(fc.tuple(fc.nat(20_000), fc.constantFrom(...plants), fc.boolean()), { maxLength: 4 }),
      fc.array(fc.nat(20_000), { maxLength: 6 }),
      (data, width, planted, cuts) => {
        let text = folded(Buffer.from(data).toString('base64'), width);
        // inserted (the line is longer) or in place of a character (the line keeps its width)
        for (const [at, what, swap] of planted) {
          const k = at % (text.length + 1);
          text = text.slice(0, k) + what + text.slice(swap ? k + what.length : k);
        }
        const input = Buffer.from(text, 'latin1');
        const native = run(new Base64Decoder(), input, cuts);
        const loop = run(new Base64Decoder({ native: false }), input, cuts);
        assert.ok(native.equals(loop), `width ${width}, planted ${JSON.stringify(planted)}, cuts ${cuts}`);
        if (!planted.length) assert.ok(native.equals(Buffer.from(data)));
      },
    ),
    { seed: 2026, numRuns: 300 },
  );
  assert.ok(nativeStats.bytes - before > 100_000, `Node's decoder took part: ${nativeStats.bytes - before} bytes`);
});

test('base64: unpadded ends, junk characters and data after padding', () => {
  assert.equal(run(new Base64Decoder(), Buffer.from('aGVsbG8'), []).toString(), 'hello');
  assert.equal(run(new Base64Decoder(), Buffer.from('aGV*sb\x00G8=\r\n'), [3]).toString(), 'hello');
  // some clients decode past padding; so does the scanner, so nothing can hide there
  assert.equal(run(new Base64Decoder(), Buffer.from('aGk=IHRoZXJl'), []).toString(), 'hi there');
});

test('base64: output never exceeds maxOutput', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(300), (junk, cut) => {
      const dec = new Base64Decoder();
      const out = Buffer.alloc(Base64Decoder.maxOutput(junk.length) + 3);
      const a = Math.min(cut, junk.length);
      const n1 = dec.decode(junk, 0, a, out);
      assert.ok(n1 <= Base64Decoder.maxOutput(a));
      const n2 = dec.decode(junk, a, junk.length, out);
      assert.ok(n2 <= Base64Decoder.maxOutput(junk.length - a));
    }),
    { seed: 7, numRuns: 300 },
  );
});

/** An obviously correct quoted-printable encoder for the round trip. */
function qpEncode(data: Uint8Array): string {
  let out = '';
  let line = 0;
  for (const b of data) {
    const lit = b >= 33 && b <= 126 && b !== 61;
    const piece = lit ? String.fromCharCode(b) : '=' + b.toString(16).toUpperCase().padStart(2, '0');
    if (line + piece.length > 75) {
      out += '=\r\n';
      line = 0;
    }
    out += piece;
    line += piece.length;
  }
  return out;
}

test('quoted-printable: any data, any chunking round-trips through soft line breaks', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 400 }), fc.array(fc.nat(1500), { maxLength: 8 }), (data, cuts) => {
      const input = Buffer.from(qpEncode(data), 'latin1');
      assert.ok(run(new QuotedPrintableDecoder(), input, cuts).equals(Buffer.from(data)));
    }),
    { seed: 3, numRuns: 400 },
  );
});

test('quoted-printable: hard line breaks kept, malformed escapes pass literally, soft break with LF or padding', () => {
  const d = (s: string, cuts: number[] = []) => run(new QuotedPrintableDecoder(), Buffer.from(s, 'latin1'), cuts).toString('latin1');
  assert.equal(d('a=3Db\r\nc'), 'a=b\r\nc');
  assert.equal(d('=ZZ and =4'), '=ZZ and =4');
  assert.equal(d('=4G'), '=4G');
  assert.equal(d('soft=\nbreak'), 'softbreak');
  assert.equal(d('soft= \t\r\nbreak', [5, 6, 7]), 'softbreak');
  for (let k = 1; k < 9; k++) assert.equal(d('x=3D=\r\ny=', [k]), 'x=y=');
});
