// Spool file systems for the relay benchmark: a journaled ext4 image
// loop-mounted under the run's temp dir, or a plain dir on /var/tmp.
import { mkdirSync, rmSync, chmodSync, existsSync, readdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { basename, join } from 'node:path';
import { register } from './cleanup.mjs';
import { run, sleep } from './proc.mjs';

/**
 * Creates a 2 GiB sparse image, mkfs.ext4 (with journal), loop-mounts it.
 * Returns { kind: 'ext4', dir, describe, release() } or throws with the reason.
 */
export async function mountExt4(tmpRoot, sizeGiB = 2) {
  if (process.getuid?.() !== 0) throw new Error('mounting a loop image needs root');
  const img = join(tmpRoot, 'spool-ext4.img');
  const mnt = join(tmpRoot, 'ext4');
  mkdirSync(mnt, { recursive: true });
  let r = await run('truncate', ['-s', `${sizeGiB}G`, img], { timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`truncate: ${r.stderr.trim()}`);
  r = await run('mkfs.ext4', ['-q', '-F', '-L', 'moatbench', img], { timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`mkfs.ext4: ${(r.stderr || r.stdout).trim()}`);
  r = await run('mount', ['-o', 'loop', img, mnt], { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`mount -o loop: ${r.stderr.trim()}`);
  const loopDev = (await run('findmnt', ['-n', '-o', 'SOURCE', mnt], { timeoutMs: 10_000 })).stdout.trim();
  chmodSync(mnt, 0o755);
  const umount = async () => {
    await run('sync', [], { timeoutMs: 60_000, cleanup: true });
    for (let i = 0; i < 10; i++) {
      const u = await run('umount', [mnt], { timeoutMs: 60_000, cleanup: true });
      if (u.code === 0) break;
      if (i === 9) {
        console.error(`bench: umount ${mnt} failed (${u.stderr.trim()}), lazy unmount`);
        await run('umount', ['-l', mnt], { timeoutMs: 30_000, cleanup: true });
      }
      await sleep(500);
    }
    // a loop device set up by mount(8) is auto-cleared; detach if it lingers
    if (loopDev.startsWith('/dev/loop') && (await run('losetup', ['-j', img], { timeoutMs: 10_000, cleanup: true })).stdout.trim())
      await run('losetup', ['-d', loopDev], { timeoutMs: 10_000, cleanup: true });
    rmSync(img, { force: true });
  };
  const handle = register(`ext4 loop mount ${mnt}`, umount, () => {
    spawnSync('umount', ['-l', mnt], { timeout: 10_000 });
    rmSync(img, { force: true });
  });
  return {
    kind: 'ext4',
    dir: mnt,
    describe: `ext4${journaled(loopDev) === false ? ' WITHOUT journal' : ' with journal'}, ${sizeGiB} GiB sparse image on ${loopDev || 'a loop device'} (${img})`,
    release: () => handle.done(),
  };
}

/** true/false when the ext4 file system on /dev/NAME has a jbd2 journal, null if unknown. */
function journaled(source) {
  const dev = basename(source);
  if (!source.startsWith('/dev/') || !existsSync(`/proc/fs/ext4/${dev}`)) return null;
  try {
    return readdirSync('/proc/fs/jbd2').some((e) => e.startsWith(`${dev}-`));
  } catch {
    return false; // no jbd2 at all: nothing is journaled
  }
}

/** A plain directory on /var/tmp's file system (the machine's root fs here). */
export async function plainDir(tmpRoot) {
  const dir = join(tmpRoot, 'plain');
  mkdirSync(dir, { recursive: true });
  chmodSync(dir, 0o755);
  const fstype = (await run('findmnt', ['-n', '-o', 'FSTYPE', '--target', dir], { timeoutMs: 10_000 })).stdout.trim();
  const source = (await run('findmnt', ['-n', '-o', 'SOURCE', '--target', dir], { timeoutMs: 10_000 })).stdout.trim();
  const j = journaled(source);
  const journal = j === null ? '' : j ? ', with journal' : ', without journal';
  return {
    kind: 'plain',
    dir,
    describe: `${tmpRoot.startsWith('/var/tmp') ? '/var/tmp' : tmpRoot}: ${fstype || '?'} on ${source || '?'}${journal}`,
    release: async () => {
      if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });
    },
  };
}
