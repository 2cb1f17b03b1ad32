// The .ndb hex signature parser: every supported construct, every unsupported
// one (a refusal of its own kind), and malformed text.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseHexSignature, SignatureSyntaxError, UnsupportedSignature, MAX_PART, MAX_VARIANTS, type Pattern } from './hex.ts';

const show = (p: Pattern) => ({
  parts: p.parts.map((x) => Array.from(x.vals, (v, j) => (x.masks[j] === 0xff ? v.toString(16).padStart(2, '0') : x.masks[j] === 0 ? '??' : x.masks[j] === 0xf0 ? `${(v >> 4).toString(16)}?` : `?${v.toString(16)}`)).join('')),
  gaps: p.gaps.map((g) => `${g.min}-${g.max}`),
  start: `${p.startLo}-${p.startHi}`,
});

test('plain bytes, any-bytes and nibble wildcards stay in one part', () => {
  assert.deepEqual(parseHexSignature('4142??4?3??a?A4344').map(show), [{ parts: ['4142??4?3??a?a4344'], gaps: [], start: '0-Infinity' }]);
});

test('gaps split parts; small fixed gaps become any-bytes', () => {
  assert.deepEqual(parseHexSignature('4142*4344{3}4546{2-5}4748{-7}4950{9-}5152[1-4]5354').map(show), [
    {
      parts: ['4142', '4344??????4546', '4748', '4950', '5152', '5354'],
      gaps: ['0-Infinity', '2-5', '0-7', '9-Infinity', '1-4'],
      start: '0-Infinity',
    },
  ]);
  assert.deepEqual(parseHexSignature('4142{17}4344').map(show)[0]!.gaps, ['17-17']);
  assert.deepEqual(parseHexSignature('4142*{2}*4344').map(show)[0]!.gaps, ['2-Infinity'], 'adjacent gaps merge');
  assert.deepEqual(parseHexSignature('4142*????*4344').map(show)[0], { parts: ['4142', '4344'], gaps: ['2-Infinity'], start: '0-Infinity' });
});

test('alternations expand into one pattern per combination', () => {
  assert.deepEqual(
    parseHexSignature('41(4243|44)45(46|47)').map((p) => show(p).parts[0]),
    ['41424345' + '46', '4142434547', '41444546', '41444547'],
  );
});

test('offsets: anywhere, exact, and a range', () => {
  assert.equal(show(parseHexSignature('4142', 7)[0]!).start, '7-7');
  assert.equal(show(parseHexSignature('4142', [7, 3])[0]!).start, '7-10');
});

test('long parts are cut into pieces joined by a gap of 0', () => {
  const hex = '41'.repeat(MAX_PART * 2 + 5);
  const p = parseHexSignature(hex)[0]!;
  assert.deepEqual(p.parts.map((x) => x.vals.length), [MAX_PART, MAX_PART, 5]);
  assert.deepEqual(p.gaps, [{ min: 0, max: 0 }, { min: 0, max: 0 }]);
});

test('valid constructs this engine does not implement are UnsupportedSignature', () => {
  for (const hex of [
    '4142!(4344)4546',
    '4142(B)4344',
    '(L)41424344',
    '4142(43??|44)4546',
    '*41424344',
    '41424344{5-}',
    '41??42??43',
    '4142*43*4445',
    '4?4?4?4?',
    '41424344' + '(41|42|43|44|45|46|47|48)'.repeat(3),
  ]) {
    assert.throws(() => parseHexSignature(hex), UnsupportedSignature, hex);
  }
  assert.ok(8 ** 3 > MAX_VARIANTS);
});

test('malformed text is SignatureSyntaxError, with the position', () => {
  const cases: Array<[string, RegExp]> = [
    ['', /empty/],
    ['414', /odd number/],
    ['41g2', /"g" at position 2/],
    ['4142 4344', /" " at position 4/],
    ['4142{3', /unterminated '\{'/],
    ['4142{3-1}4344', /empty range/],
    ['4142{x}4344', /malformed gap/],
    ['4142{99999999999}4344', /bad number|too large/],
    ['4142[3]4344', /malformed gap/],
    ['41(42|43', /unterminated '\('/],
    ['41(42||43)44', /empty alternative/],
    ['41(423|43)44', /odd number/],
    ['41(4x|43)44', /unexpected character in alternation/],
    ['41(42)44', /one alternative/],
    ['41!42', /unexpected '!'/],
    ['41(42|(43|44))', /nested/],
  ];
  for (const [hex, re] of cases) assert.throws(() => parseHexSignature(hex), (e: Error) => e instanceof SignatureSyntaxError && re.test(e.message), hex);
  assert.throws(() => parseHexSignature('41'.repeat(40000)), SignatureSyntaxError);
  assert.throws(() => parseHexSignature('4142', -1), SignatureSyntaxError);
  assert.throws(() => parseHexSignature('4142', 1.5), SignatureSyntaxError);
});
