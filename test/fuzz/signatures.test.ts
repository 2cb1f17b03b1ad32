// Fuzzing the ClamAV signature loaders (firmware/scan/signatures/load.ts) and the compiler
// behind them: random and grammar-shaped .ndb, .hdb and .hsb lines. A file either loads into
// a set that compiles and scans, or fails with a SignatureFileError naming file:line; never
// a throw of another kind, never a set the compiler then refuses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { checkSignatureFile, signatureOutcomes as outcomes } from './properties.ts';
import { fuzzParams } from './settings.ts';

const hexByte = fc.integer({ min: 0, max: 255 }).map((b) => b.toString(16).padStart(2, '0'));
const hexRun = fc.array(hexByte, { minLength: 1, maxLength: 6 }).map((a) => a.join(''));
const token = fc.oneof(
  { weight: 6, arbitrary: hexRun },
  fc.constantFrom('??', '*', 'a?', '?b', '{2}', '{-3}', '{4-}', '{1-9}', '[1-4]', '{9999999999}', '(', ')', '|', '!', 'zz', '0', ''),
  fc.tuple(hexRun, hexRun).map(([a, b]) => `(${a}|${b})`),
  fc.tuple(hexRun, hexRun).map(([a, b]) => `!(${a}|${b})`),
  fc.integer({ min: 0, max: 300 }).map((n) => `{${n}-${n + 5}}`),
);
const hex = fc.array(token, { minLength: 0, maxLength: 10 }).map((t) => t.join(''));
const name = fc.oneof(fc.constantFrom('Fuzz.Sig', 'A', '', 'x'.repeat(300), 'Na:me', 'Ünï'), fc.string({ maxLength: 12 }));
const offset = fc.oneof(fc.constantFrom('*', '0', '10', '5,10', '10,5', 'EP+0', 'EOF-10', 'S1+2', 'SL+4', 'SE1', 'VI', '-1', '', '99999999999', 'x'), fc.nat().map(String));
const target = fc.oneof(fc.constantFrom('0', '4', '7', '1', '3', '14', '', 'x', '-1'), fc.nat(20).map(String));
const flevel = fc.oneof(fc.constant(''), fc.constantFrom(':51', ':73', ':51:255', ':x', ':255:1', ':', '::'));
const ndb = fc.tuple(name, target, offset, hex, flevel).map(([n, t, o, h, f]) => `${n}:${t}:${o}:${h}${f}`);
const digest = fc.constantFrom(32, 40, 64, 31, 65, 0).chain((n) => fc.array(fc.constantFrom(...'0123456789abcdefABCDEFg'), { minLength: n, maxLength: n }).map((a) => a.join('')));
const size = fc.oneof(fc.constantFrom('*', '0', '-1', '', 'x', '18446744073709551616'), fc.nat().map(String));
const hashLine = fc.tuple(digest, size, name, flevel).map(([d, s, n, f]) => `${d}:${s}:${n}${f}`);
const junk = fc.oneof(fc.string({ maxLength: 80 }), fc.string({ unit: 'binary', maxLength: 80 }), fc.constantFrom('#comment', '', '\r', ':::', '\0'));
const goodHex = fc.array(fc.oneof({ weight: 3, arbitrary: hexRun }, fc.constantFrom('??', '*', '{2-4}', '(4142|4344)')), { minLength: 1, maxLength: 5 }).map((t) => `4d4f${t.join('')}4154`);
const goodNdb = fc.tuple(fc.constantFrom('Fuzz.A', 'Fuzz.B'), fc.constantFrom('0', '4', '7'), fc.constantFrom('*', '0', '3,9'), goodHex).map(([n, t, o, h]) => `${n}:${t}:${o}:${h}`);
const goodHash = fc.tuple(fc.constantFrom(32, 64), fc.nat(99999)).chain(([k, sz]) => fc.array(fc.constantFrom(...'0123456789abcdef'), { minLength: k, maxLength: k }).map((a) => `${a.join('')}:${sz}:Fuzz.H`));
const lines = (good: fc.Arbitrary<string>, l: fc.Arbitrary<string>) => fc.array(fc.oneof({ weight: 6, arbitrary: good }, { weight: 3, arbitrary: l }, junk), { minLength: 1, maxLength: 4 });
const file = fc.oneof(
  lines(goodNdb, ndb).map((ls) => ({ ext: 'ndb', ls })),
  lines(goodHash, hashLine).map((ls) => ({ ext: 'hdb', ls })),
  lines(goodHash, hashLine).map((ls) => ({ ext: 'hsb', ls })),
);
const eol = fc.constantFrom('\n', '\r\n');

test('signature loaders: random and grammar-shaped .ndb/.hdb/.hsb lines load into a set that compiles, or fail with a SignatureFileError', async () => {
  await fc.assert(
    fc.asyncProperty(file, eol, async ({ ext, ls }, nl) => checkSignatureFile(ext, ls.join(nl) + nl)),
    fuzzParams(600),
  );
  assert.ok(outcomes.loaded > 20 && outcomes.refused > 20, `both outcomes reached (${outcomes.loaded} loaded, ${outcomes.refused} refused)`);
});
