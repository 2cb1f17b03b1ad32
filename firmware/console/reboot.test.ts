import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { rebootAction } from './reboot.ts';

test('reboot by request file: the file appears for the path unit; a planted link is replaced, not followed; a missing directory is a clear error', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'moat-reboot-'));
  try {
    const file = join(dir, 'reboot');
    await rebootAction({ requestFile: file })();
    assert.match(await readFile(file, 'utf8'), /^\d{4}-\d\d-\d\dT.*Z\n$/);
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    // asked again while the first request is still there
    await rebootAction({ requestFile: file })();
    // a symbolic link planted in its place
    const victim = join(dir, 'victim');
    await writeFile(victim, 'keep');
    await rm(file);
    await symlink(victim, file);
    await rebootAction({ requestFile: file })();
    assert.equal(await readFile(victim, 'utf8'), 'keep', 'the link target is untouched');
    await assert.rejects(rebootAction({ requestFile: join(dir, 'gone', 'reboot') })(), /cannot ask for a reboot .*ENOENT/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('development mode only reports', async () => {
  const said: string[] = [];
  await rebootAction({ dev: true, say: (l) => said.push(l) })();
  assert.deepEqual(said, ['development mode: would reboot now']);
});
