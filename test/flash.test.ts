// flash.sh against fake disks: a real loop device (a file behind /dev/loopN) described by a
// fake /sys/block tree and fake /proc/mounts and /proc/swaps (MOAT_SYSFS, MOAT_PROC_MOUNTS,
// MOAT_PROC_SWAPS). Refusals (system disk, mounted, not removable, typed name mismatch,
// too small) write nothing; a confirmed write is read back and verified. --config seeds
// a stand-in image's data partition in the configuration store's format.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { ConfigStore } from '../firmware/config/store.ts';
import { parseConfig } from '../firmware/config/schema.ts';

const run = promisify(execFile);
const REPO = join(import.meta.dirname, '..');
const DISK = 32 * 1024 * 1024;

type Result = { code: number | null; stdout: string; stderr: string };

function flash(args: string[], env: Record<string, string>, input = ''): Promise<Result> {
  return new Promise((resolve, reject) => {
    const p = spawn('bash', ['flash.sh', ...args], { cwd: REPO, env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stdout, stderr }));
    p.stdin.end(input);
  });
}

type Fake = { dir: string; dev: string; name: string; backing: string; before: Buffer; env: Record<string, string>; sysBlock: string; close(): Promise<void> };

/** A loop device over a file of random bytes, shown to flash.sh as a removable SD card reader. */
async function fakeDisk(o: { removable?: boolean } = {}): Promise<Fake> {
  const dir = await mkdtemp(join(tmpdir(), 'moat-flash-'));
  const backing = join(dir, 'card');
  const before = randomBytes(DISK);
  await writeFile(backing, before);
  const dev = (await run('losetup', ['--find', '--show', backing], { encoding: 'utf8' })).stdout.trim();
  const name = basename(dev);
  const sys = join(dir, 'sys');
  const sysBlock = join(sys, 'block', name);
  await mkdir(join(sysBlock, 'device'), { recursive: true });
  await mkdir(join(sysBlock, `${name}p1`), { recursive: true });
  await writeFile(join(sysBlock, `${name}p1`, 'partition'), '1\n');
  await writeFile(join(sysBlock, 'removable'), o.removable === false ? '0\n' : '1\n');
  await writeFile(join(sysBlock, 'size'), `${DISK / 512}\n`);
  await writeFile(join(sysBlock, 'device/vendor'), 'Generic \n');
  await writeFile(join(sysBlock, 'device/model'), 'STORAGE DEVICE  \n');
  // the machine's own disk, to show that only the named disk matters
  await mkdir(join(sys, 'block/vda'), { recursive: true });
  await writeFile(join(dir, 'mounts'), '/dev/vda / ext4 rw 0 0\nproc /proc proc rw 0 0\n');
  await writeFile(join(dir, 'swaps'), 'Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n');
  return {
    dir,
    dev,
    name,
    backing,
    before,
    sysBlock,
    env: { MOAT_SYSFS: sys, MOAT_PROC_MOUNTS: join(dir, 'mounts'), MOAT_PROC_SWAPS: join(dir, 'swaps') },
    async close() {
      await run('losetup', ['-d', dev]).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function image(dir: string, bytes: number): Promise<{ file: string; data: Buffer }> {
  const data = randomBytes(bytes);
  const file = join(dir, 'moat.img');
  await writeFile(file, data);
  return { file, data };
}

async function untouched(f: Fake): Promise<void> {
  assert.ok((await readFile(f.backing)).equals(f.before), 'nothing was written to the device');
}

test('a confirmed write to a removable disk: model and size shown, written, synced, read back and verified', async () => {
  const f = await fakeDisk();
  try {
    const img = await image(f.dir, 5 * 1024 * 1024 + 123); // not a whole block: the tail is written and verified too
    const r = await flash(['--image', img.file, f.dev], f.env, `${f.name}\n`);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`Device: ${f.dev} \\(Generic STORAGE DEVICE\\), 33\\.6 MB`));
    assert.match(r.stdout, /Type the device name \(loop\d+\) to write it/);
    const sum = (await run('sha256sum', [img.file], { encoding: 'utf8' })).stdout.split(' ')[0]!;
    assert.match(r.stdout, new RegExp(`written and verified \\(SHA-256 ${sum}\\)`));
    const card = await readFile(f.backing);
    assert.ok(card.subarray(0, img.data.length).equals(img.data), 'the image is on the card');
    assert.ok(card.subarray(img.data.length).equals(f.before.subarray(img.data.length)), 'nothing past the image');
  } finally {
    await f.close();
  }
});

test('typing anything but the device name cancels and writes nothing', async () => {
  const f = await fakeDisk();
  try {
    const img = await image(f.dir, 1024 * 1024);
    for (const typed of ['sdb\n', '', 'yes\n', `${f.name}x\n`]) {
      const r = await flash(['--image', img.file, f.dev], f.env, typed);
      assert.equal(r.code, 1);
      assert.match(r.stdout, /Type the device name/);
      assert.match(r.stderr, /cancelled: .* is not loop\d+; nothing written/);
    }
    await untouched(f);
  } finally {
    await f.close();
  }
});

test('the system disk is refused, even with --force: a partition mounted on / or /boot, or used as swap', async () => {
  const f = await fakeDisk();
  try {
    const img = await image(f.dir, 1024 * 1024);
    for (const [mounts, swaps] of [
      [`/dev/${f.name}p1 / ext4 rw 0 0\n`, ''],
      [`/dev/vda / ext4 rw 0 0\n/dev/${f.name}p1 /boot/efi vfat rw 0 0\n`, ''],
      ['/dev/vda / ext4 rw 0 0\n', `/dev/${f.name}p1 partition 1048572 0 -2\n`],
    ] as const) {
      await writeFile(f.env.MOAT_PROC_MOUNTS!, mounts);
      await writeFile(f.env.MOAT_PROC_SWAPS!, `Filename Type Size Used Priority\n${swaps}`);
      const r = await flash(['--force', '--image', img.file, f.dev], f.env, `${f.name}\n`);
      assert.equal(r.code, 1);
      assert.match(r.stderr, new RegExp(`${f.dev} is the system disk .*: refused`));
      assert.doesNotMatch(r.stdout, /Type the device name/, 'refused before asking');
    }
    await untouched(f);
  } finally {
    await f.close();
  }
});

test('a disk with a mounted partition is refused', async () => {
  const f = await fakeDisk();
  try {
    const img = await image(f.dir, 1024 * 1024);
    await writeFile(f.env.MOAT_PROC_MOUNTS!, `/dev/vda / ext4 rw 0 0\n/dev/${f.name}p1 /media/card vfat rw 0 0\n`);
    const r = await flash(['--image', img.file, f.dev], f.env, `${f.name}\n`);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`${f.dev} is in use: /dev/${f.name}p1 is mounted on /media/card \\(unmount it first\\)`));
    await untouched(f);
  } finally {
    await f.close();
  }
});

test('a disk that is not removable is refused unless --force; a USB disk counts as removable', async () => {
  const f = await fakeDisk({ removable: false });
  try {
    const img = await image(f.dir, 1024 * 1024);
    const r = await flash(['--image', img.file, f.dev], f.env, `${f.name}\n`);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /is not a removable disk \(nor on USB\): refused; --force if you are sure/);
    await untouched(f);
    const forced = await flash(['--force', '--image', img.file, f.dev], f.env, `${f.name}\n`);
    assert.equal(forced.code, 0, forced.stderr);
    assert.ok((await readFile(f.backing)).subarray(0, img.data.length).equals(img.data));

    // the same disk seen behind a USB bridge (sysfs: block/NAME -> devices/…/usb1/…)
    const sys = f.env.MOAT_SYSFS!;
    const real = join(sys, 'devices/pci0000:00/0000:00:14.0/usb1/1-1/host6/block', f.name);
    await mkdir(join(real, '..'), { recursive: true });
    await cp(f.sysBlock, real, { recursive: true });
    await rm(f.sysBlock, { recursive: true });
    await symlink(real, f.sysBlock);
    const usb = await flash(['--image', img.file, f.dev], f.env, 'no\n');
    assert.match(usb.stdout, /Type the device name/, 'a USB disk gets as far as the question');
  } finally {
    await f.close();
  }
});

test('not a block device, not a whole disk, or too small for the image: refused by name', async () => {
  const f = await fakeDisk();
  try {
    const img = await image(f.dir, 1024 * 1024);
    const file = await flash(['--image', img.file, f.backing], f.env, '');
    assert.match(file.stderr, /is not a block device/);
    // a partition: its name is a partition of the fake disk, not a disk
    await rm(join(f.sysBlock, `${f.name}p1`), { recursive: true });
    await rm(f.sysBlock, { recursive: true, force: true });
    const sysBlockRoot = join(f.env.MOAT_SYSFS!, 'block');
    await mkdir(join(sysBlockRoot, 'mmcblk0', f.name), { recursive: true });
    await writeFile(join(sysBlockRoot, 'mmcblk0', f.name, 'partition'), '2\n');
    const part = await flash(['--image', img.file, f.dev], f.env, '');
    assert.match(part.stderr, new RegExp(`${f.dev} is a partition of /dev/mmcblk0, not a whole disk`));
    await untouched(f);
  } finally {
    await f.close();
  }
  const small = await fakeDisk();
  try {
    const big = await image(small.dir, DISK + 512);
    const r = await flash(['--image', big.file, small.dev], small.env, `${small.name}\n`);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /does not fit on/);
    await untouched(small);
  } finally {
    await small.close();
  }
});

test('--config seeds the data partition as revision 1 of the configuration store; an invalid seed writes nothing', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'moat-seed-'));
  try {
    // a stand-in image (the real recipe, a stand-in root)
    const root = join(dir, 'root');
    await mkdir(join(root, 'boot/firmware'), { recursive: true });
    await writeFile(join(root, 'boot/firmware/start4.elf'), 'fw\n');
    await writeFile(join(root, 'boot/vmlinuz-6.1.0-10-arm64'), 'k\n');
    await writeFile(join(root, 'boot/initrd.img-6.1.0-10-arm64'), 'i\n');
    await cp(join(REPO, 'board/rootfs'), root, { recursive: true });
    const img = join(dir, 'moat.img');
    await run('bash', ['scripts/assemble-image.sh', '--root', root, '--output', img, '--boot-mib', '64', '--data-mib', '16'], { cwd: REPO });

    const seed = {
      hostname: 'mx.example.com',
      inbound: { localDomains: ['example.com', 'example.org'] },
      internal: { servers: [{ host: '10.0.0.5', port: 2222 }], networks: ['10.0.0.0/8'] },
      network: { mode: 'static', address: '192.0.2.10', prefix: 24, gateway: '192.0.2.1', dnsServers: ['192.0.2.53'] },
      admin: { passwordHash: 'scrypt$16384$8$1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g=', mustChangePassword: false },
    };
    await writeFile(join(dir, 'seed.json'), JSON.stringify(seed));
    const out = join(dir, 'seeded.img');
    const r = await flash(['--image', img, '--config', join(dir, 'seed.json'), '--output', out], {});
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stdout + r.stderr, /scrypt/, 'the password hash is not printed');

    // read the data partition back without mounting it
    const table = JSON.parse((await run('sfdisk', ['--json', out], { encoding: 'utf8' })).stdout) as { partitiontable: { partitions: Array<{ start: number; size: number }> } };
    const p = table.partitiontable.partitions[2]!;
    const p3 = join(dir, 'p3');
    await run('dd', [`if=${out}`, `of=${p3}`, 'bs=512', `skip=${p.start}`, `count=${p.size}`, 'status=none']);
    await run('e2fsck', ['-fn', p3]);
    const debugfs = async (cmd: string) => (await run('debugfs', ['-R', cmd, p3], { encoding: 'utf8' })).stdout;
    const store = join(dir, 'store');
    await mkdir(join(store, 'config.json.d'), { recursive: true });
    await writeFile(join(store, 'config.json'), await debugfs('cat moat/config.json'));
    await writeFile(join(store, 'config.json.d/rev-000001.json'), await debugfs('cat moat/config.json.d/rev-000001.json'));
    assert.match(await debugfs('stat moat/config.json'), /Mode:\s+0640[\s\S]*User:\s+990\s+Group:\s+990/);
    assert.match(await debugfs('stat moat/config.json.d/rev-000001.json'), /Mode:\s+0600[\s\S]*User:\s+990\s+Group:\s+990/);

    const s = await ConfigStore.open(join(store, 'config.json'), { validate: parseConfig });
    assert.deepEqual(s.recovery, { recovered: false });
    assert.equal(s.runningRevision, 1, 'the running file is revision 1, checksum good');
    assert.equal(s.revisions()[0]!.user, 'flash.sh');
    assert.deepEqual(s.config.inbound.localDomains, ['example.com', 'example.org']);
    assert.equal(s.config.internal.servers[0]!.host, '10.0.0.5');
    assert.equal(s.config.network.address, '192.0.2.10');
    assert.equal(s.config.admin.mustChangePassword, false);
    assert.equal(s.config.storage.dataDir, '/data/moat', 'the factory settings stay under the seed');
    assert.equal(s.config.console.device, '/dev/serial0');

    // seeding an image twice is refused; a bad seed names the setting and writes nothing
    const twice = await flash(['--image', out, '--config', join(dir, 'seed.json'), '--output', join(dir, 'twice.img')], {});
    assert.equal(twice.code, 1);
    assert.match(twice.stderr, /has configuration revisions already/);
    await writeFile(join(dir, 'bad.json'), JSON.stringify({ ...seed, inbound: { localDomains: ['example.com'], maxMessageSize: 'big' } }));
    const bad = await flash(['--image', img, '--config', join(dir, 'bad.json'), '--output', join(dir, 'bad.img')], {});
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /inbound\.maxMessageSize: expected a number of bytes, got "big"/);
    await assert.rejects(readFile(join(dir, 'bad.img')), { code: 'ENOENT' });
    await writeFile(join(dir, 'torn.json'), '{"hostname": ');
    const torn = await flash(['--image', img, '--config', join(dir, 'torn.json'), '--output', join(dir, 'bad.img')], {});
    assert.match(torn.stderr, /torn\.json is not JSON/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('flash.sh without a device or --output shows its usage; unknown options are named', async () => {
  const r = await flash([], {});
  assert.equal(r.code, 2);
  assert.match(r.stderr, /flash\.sh \[--image FILE\] \[--config FILE\] \[--force\] DEVICE/);
  const u = await flash(['--bogus', '/dev/null'], {});
  assert.match(u.stderr, /unknown option --bogus/);
});
