// Replays every input the fuzzers ever failed on, and the hostile seed inputs kept beside
// them (test/fixtures/fuzz/*.json), through the
// same properties (properties.ts), so a fixed bug stays fixed. A fixture is one JSON object:
//   { "target": "address", "raw": "<...>", "allowNull": true, "why": "what broke, or why it is kept" }
//   { "target": "mime", "base64": "...", "cuts": [1, 2], "why": "..." }
//   { "target": "signatures", "ext": "ndb", "text": "...", "why": "..." }
//   { "target": "smtp", "base64": "...", "why": "..." }
//   { "target": "config", "doc": <any JSON>, "touched": ["section", ...] or null, "why": "..." }
// A fixture that does not have this shape fails the test with its file name.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkPath, checkMime, checkSignatureFile, checkConfig, session, wellFormed, stillServes } from './properties.ts';
import { withRelay } from '../helpers/moat.ts';

const DIR = join(import.meta.dirname, '..', 'fixtures', 'fuzz');
type Fixture =
  | { target: 'address'; raw: string; allowNull: boolean; why: string }
  | { target: 'mime'; base64: string; cuts: number[]; why: string }
  | { target: 'signatures'; ext: 'ndb' | 'hdb' | 'hsb'; text: string; why: string }
  | { target: 'smtp'; base64: string; why: string }
  | { target: 'config'; doc: unknown; touched: string[] | null; why: string };

function load(): Array<{ file: string; f: Fixture }> {
  return readdirSync(DIR)
    .filter((n) => n.endsWith('.json'))
    .sort()
    .map((file) => {
      let f: Record<string, unknown>;
      try {
        f = JSON.parse(readFileSync(join(DIR, file), 'utf8'));
      } catch (e) {
        throw new Error(`${file}: not JSON: ${(e as Error).message}`);
      }
      const ok =
        typeof f.why === 'string' &&
        ((f.target === 'address' && typeof f.raw === 'string' && typeof f.allowNull === 'boolean') ||
          (f.target === 'mime' && typeof f.base64 === 'string' && Array.isArray(f.cuts) && f.cuts.every((c) => Number.isInteger(c) && c >= 0)) ||
          (f.target === 'signatures' && ['ndb', 'hdb', 'hsb'].includes(f.ext as string) && typeof f.text === 'string') ||
          (f.target === 'smtp' && typeof f.base64 === 'string') ||
          (f.target === 'config' && 'doc' in f && (f.touched === null || (Array.isArray(f.touched) && f.touched.every((k) => typeof k === 'string')))));
      if (!ok) throw new Error(`${file}: not a fuzz fixture (see the header of regressions.test.ts)`);
      return { file, f: f as Fixture };
    });
}

test('fuzz regressions: every kept input (past failures and hostile seeds) passes its properties', async () => {
  const fixtures = load();
  assert.ok(fixtures.length > 0, `no fixtures in ${DIR}`);
  const smtp = fixtures.filter((x) => x.f.target === 'smtp');
  for (const { file, f } of fixtures) {
    try {
      if (f.target === 'address') checkPath(f.raw, f.allowNull);
      else if (f.target === 'mime') {
        const m = Buffer.from(f.base64, 'base64');
        checkMime(m, f.cuts.map((c) => Math.min(c, m.length)));
      } else if (f.target === 'signatures') await checkSignatureFile(f.ext, f.text);
      else if (f.target === 'config') checkConfig(f.doc, f.touched);
    } catch (e) {
      throw new Error(`${file} (${f.why}): ${(e as Error).message}`);
    }
  }
  if (smtp.length) {
    await withRelay({ inbound: { maxMessageSize: 1024 * 1024 } }, async ({ moat }) => {
      for (const { file, f } of smtp) {
        try {
          wellFormed(await session(moat.port, '127.0.0.9', Buffer.from((f as { base64: string }).base64, 'base64')));
          await stillServes(moat.port);
        } catch (e) {
          throw new Error(`${file} (${f.why}): ${(e as Error).message}`);
        }
      }
    });
  }
});
