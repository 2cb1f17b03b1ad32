// scripts/bench-compare.mjs refuses bad options by name with exit status 2 before it starts
// anything (the benchmark itself runs with `npm run bench:compare`, not in the suite).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const SCRIPT = join(import.meta.dirname, '..', 'scripts', 'bench-compare.mjs');
const run = (...args: string[]) => spawnSync(process.execPath, [SCRIPT, ...args], { encoding: 'utf8', timeout: 60_000 });

test('bench-compare: unknown targets, workloads and scan modes, and bad numbers are refused by name; --help lists the options', () => {
  const r = run('--targets', 'moat,exim', '--workloads', 'A,C', '--scan', 'maybe', '--repeat', '0', '--probe-sessions', '99');
  assert.equal(r.status, 2);
  for (const what of ['target "exim"', 'workload "C"', 'scan "maybe"', '--repeat must be an integer of at least 1', '--probe-sessions must be an integer from 1 to 16'])
    assert.ok(r.stderr.includes(what), `names ${what}: ${r.stderr}`);
  const unknown = run('--fast');
  assert.equal(unknown.status, 2);
  assert.match(unknown.stderr, /Unknown option '--fast'/);
  const help = run('--help');
  assert.equal(help.status, 0);
  for (const o of ['--quick', '--workloads', '--targets', '--scan', '--repeat', '--probe-sessions', '--timeout', '--stall', '--out']) assert.ok(help.stdout.includes(o), `--help names ${o}`);
});
