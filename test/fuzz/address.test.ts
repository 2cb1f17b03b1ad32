// Fuzzing the envelope path parser (firmware/policy/address.ts): random strings, and paths
// built from the address grammar with the characters that route (%, !, @, :, quotes,
// brackets, dots) mixed in. Whatever comes in: no throw, a constant reason, and anything
// accepted parses back to the same mailbox and holds nothing that could route.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { checkPath, pathOutcomes } from './properties.ts';
import { fuzzParams } from './settings.ts';

const atoms = ['a', 'Z', '0', '.', '..', '-', '_', '+', '%', '!', '@', ':', '"', '\\', '[', ']', '<', '>', ',', ' ', '\t', '\r', '\n', '\0', 'é', 'ß', '\u202e', '\u200b', '\ufeff', 'xn--', '127.0.0.1', '0x7f', 'postmaster', 'example.com', 'EXAMPLE.COM.', '\ud800'];
const piece = fc.oneof(fc.constantFrom(...atoms), fc.string({ maxLength: 8 }), fc.string({ unit: 'binary', maxLength: 8 }));
const shaped = fc
  .tuple(fc.array(piece, { maxLength: 12 }), fc.array(piece, { maxLength: 12 }), fc.boolean(), fc.boolean())
  .map(([local, domain, open, close]) => `${open ? '<' : ''}${local.join('')}@${domain.join('')}${close ? '>' : ''}`);
const long = fc.tuple(fc.constantFrom('a', '.', 'é', '%'), fc.integer({ min: 60, max: 2000 })).map(([c, n]) => `<${c.repeat(n)}@example.com>`);
const valid = fc.emailAddress().map((a) => `<${a}>`);
const mutated = fc.tuple(fc.emailAddress(), fc.nat(), fc.constantFrom(...atoms)).map(([a, i, ins]) => `<${a.slice(0, i % (a.length + 1))}${ins}${a.slice(i % (a.length + 1))}>`);
const input = fc.oneof(valid, mutated, shaped, long, fc.string({ maxLength: 300 }), fc.string({ unit: 'binary', maxLength: 300 }).map((s) => `<${s}>`));

test('address parser: random and grammar-shaped paths never throw; what is accepted is normalised and parses back the same', () => {
  fc.assert(
    fc.property(input, fc.boolean(), (raw, allowNull) => checkPath(raw, allowNull)),
    fuzzParams(20_000),
  );
  assert.ok(pathOutcomes.accepted > 1000 && pathOutcomes.refused > 1000, `the inputs reach both outcomes (${JSON.stringify(pathOutcomes)})`);
});
