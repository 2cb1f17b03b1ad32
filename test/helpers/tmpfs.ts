// A small tmpfs mounted for one test, to fill a file system for real. Needs root, as the
// test suite does (scripts/test.sh runs as root); without it the test fails and says why.
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export async function withTmpfs(size: string, fn: (dir: string) => Promise<void>): Promise<void> {
  const mnt = await mkdtemp(join(tmpdir(), 'moat-tmpfs-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', mnt], { stdio: 'pipe' });
  } catch (e) {
    await rm(mnt, { recursive: true, force: true });
    throw new Error(`cannot mount a ${size} tmpfs (the test suite runs as root, see scripts/test.sh): ${(e as Error).message}`);
  }
  try {
    await fn(mnt);
  } finally {
    execFileSync('umount', [mnt]);
    await rm(mnt, { recursive: true, force: true });
  }
}
