// docs/security.md names, for each defence, the test that proves it (`FILE` › test name).
// This test checks that every such citation names a test file that exists and a test in it
// by its exact name, so the threat model cannot drift from the tests. Called by npm test.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..');
const doc = readFileSync(join(root, 'docs', 'security.md'), 'utf8');

test('docs/security.md: every cited test exists by file and exact name, in each part of the threat model', () => {
  const sections = doc.split(/^## /m);
  const cited = (text: string) => [...text.matchAll(/^- `([^`]+\.test\.ts)` › (.+)$/gm)].map((m) => ({ file: m[1]!, name: m[2]!.trim() }));
  const all = cited(doc);
  assert.ok(all.length >= 40, `at least 40 citations (${all.length})`);
  for (const part of ['1. Internet senders', '2. A compromised internal host', '3. Someone at the serial port', '4. Mail leaving for the Internet']) {
    const s = sections.find((x) => x.startsWith(part));
    assert.ok(s, `a section "${part}"`);
    assert.ok(cited(s).length >= 5, `"${part}" cites its tests`);
  }
  const missing: string[] = [];
  for (const { file, name } of all) {
    const p = join(root, file);
    if (!existsSync(p)) {
      missing.push(`${file}: no such file`);
      continue;
    }
    const src = readFileSync(p, 'utf8');
    if (![`'${name}'`, `"${name}"`, `\`${name}\``].some((q) => src.includes(`test(${q}`))) missing.push(`${file}: no test named "${name}"`);
  }
  assert.deepEqual(missing, []);
});
