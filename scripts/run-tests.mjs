#!/usr/bin/env node
// Runs every *.test.ts under firmware/ and test/ with node's own test runner.
// Refuses to run when it finds no test files: a glob that matches nothing
// would otherwise run 0 tests and still exit 0.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

function collect(dir, out) {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name.startsWith('.')) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) collect(p, out);
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

const files = [...collect('firmware', []), ...collect('test', [])].sort();
const only = process.argv.slice(2);
const selected = only.length ? files.filter((f) => only.some((o) => f.includes(o))) : files;
if (selected.length === 0) {
  console.error('run-tests: no test files found');
  process.exit(1);
}
console.error(`run-tests: ${selected.length} test files on node ${process.version}`);
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=2', '--test-timeout=120000', ...selected], {
  stdio: 'inherit',
});
process.exit(r.status ?? 1);
