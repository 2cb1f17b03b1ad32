// scripts/torture.mjs refuses bad options with a clear message and exit status 2, before it
// starts anything (the scenarios themselves run with `npm run torture`, not in the suite).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const SCRIPT = join(import.meta.dirname, '..', 'scripts', 'torture.mjs');
const run = (...args: string[]) => spawnSync(process.execPath, [SCRIPT, ...args], { encoding: 'utf8', timeout: 60_000 });

test('torture: fewer than 50 kills, no outbound kills, a bad duration and an unknown scenario are refused by name; --help lists the options', () => {
  const kills = run('--kills', '3');
  assert.equal(kills.status, 2);
  assert.match(kills.stderr, /--kills must be an integer of at least 50/);
  const soak = run('--soak', 'long');
  assert.equal(soak.status, 2);
  assert.match(soak.stderr, /--soak must be an integer of at least 10/);
  const only = run('--only', 'kill,nope');
  assert.equal(only.status, 2);
  assert.match(only.stderr, /unknown scenario "nope"/);
  const okills = run('--outbound-kills', '0');
  assert.equal(okills.status, 2);
  assert.match(okills.stderr, /--outbound-kills must be an integer of at least 1/);
  const help = run('--help');
  assert.equal(help.status, 0);
  for (const o of ['--quick', '--only', '--kills', '--outage', '--soak', '--outbound-kills', '--workers', '--seed', 'outbound']) assert.ok(help.stdout.includes(o), `--help names ${o}`);
});
