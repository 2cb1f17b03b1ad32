// The appliance image's recipe, fast: scripts/assemble-image.sh on a small stand-in root
// (a directory with a kernel, an initrd, Pi firmware files and the factory configuration,
// not the real Debian root), its result read back with the tools of the field (sfdisk
// --json, mtools, unsquashfs, debugfs), twice for reproducibility; the files of board/
// checked as the appliance will use them (systemd-analyze verify, nft -c, fstab, config.txt
// against the board profiles); moatd's --version and --check.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, cp, mkdir, mkdtemp, readFile, rm, writeFile, chmod, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { loadProfile } from '../firmware/panel/board.ts';
import { compileDtb, decompileDtb, TINY_BOARD_DTS } from './helpers/dtb.ts';
import { parseConfig } from '../firmware/config/schema.ts';

const run = promisify(execFile);
const REPO = join(import.meta.dirname, '..');
const sh = (cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string } = {}) =>
  run(cmd, args, { cwd: REPO, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8', ...(opts.env ? { env: opts.env } : {}) });

/** A stand-in root: what assemble-image.sh takes from a real one, in a few small files. */
async function standInRoot(dir: string): Promise<string> {
  const root = join(dir, 'root');
  await mkdir(join(root, 'boot/firmware/overlays'), { recursive: true });
  await writeFile(join(root, 'boot/firmware/start4.elf'), 'pi4 firmware\n');
  await writeFile(join(root, 'boot/firmware/bootcode.bin'), 'pi3 boot code\n');
  compileDtb(TINY_BOARD_DTS, join(root, 'boot/firmware/bcm2711-rpi-4-b.dtb'));
  compileDtb(TINY_BOARD_DTS.replace('bcm2711', 'bcm2837'), join(root, 'boot/firmware/bcm2837-rpi-3-b.dtb'));
  compileDtb(TINY_BOARD_DTS, join(root, 'boot/firmware/bcm2711-rpi-5-b.dtb')); // named by no profile: left alone
  await writeFile(join(root, 'boot/firmware/overlays/gpio-led.dtbo'), 'overlay\n');
  await writeFile(join(root, 'boot/firmware/config.txt'), 'raspi-firmware\'s own config.txt, replaced\n');
  await writeFile(join(root, 'boot/firmware/vmlinuz-6.1.0-9-arm64'), 'a copy the hook made\n');
  await writeFile(join(root, 'boot/vmlinuz-6.1.0-9-arm64'), 'old kernel\n');
  await writeFile(join(root, 'boot/vmlinuz-6.1.0-10-arm64'), 'new kernel\n');
  await writeFile(join(root, 'boot/initrd.img-6.1.0-10-arm64'), 'new initrd\n');
  await cp(join(REPO, 'board/rootfs'), root, { recursive: true });
  await mkdir(join(root, 'usr/bin'), { recursive: true });
  await writeFile(join(root, 'usr/bin/hello'), '#!/bin/sh\necho hello\n');
  await chmod(join(root, 'usr/bin/hello'), 0o755);
  return root;
}

type Part = { start: number; size: number; type: string; bootable?: boolean };

async function partitions(img: string): Promise<{ id: string; label: string; partitions: Part[] }> {
  const { stdout } = await sh('sfdisk', ['--json', img]);
  return (JSON.parse(stdout) as { partitiontable: { id: string; label: string; partitions: Part[] } }).partitiontable;
}

async function extract(img: string, p: Part, out: string): Promise<string> {
  await sh('dd', [`if=${img}`, `of=${out}`, 'bs=512', `skip=${p.start}`, `count=${p.size}`, 'status=none']);
  return out;
}

test('assemble-image.sh on a stand-in root: MBR with boot, squashfs root and data; config.txt per board; reproducible', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'moat-image-'));
  try {
    const root = await standInRoot(dir);
    const img = join(dir, 'out/moat.img');
    const env = { ...process.env, SOURCE_DATE_EPOCH: '1700000000' };
    await sh('bash', ['scripts/assemble-image.sh', '--root', root, '--output', img, '--boot-mib', '64', '--data-mib', '16'], { env });

    const t = await partitions(img);
    assert.equal(t.label, 'dos');
    assert.equal(t.id, '0x6d6f6174', 'the disk identifier behind root=PARTUUID=6d6f6174-02');
    assert.equal(t.partitions.length, 3);
    const [boot, rootPart, data] = t.partitions as [Part, Part, Part];
    assert.deepEqual([boot.start, boot.size, boot.type, boot.bootable], [8192, 64 * 2048, 'c', true]);
    assert.equal(rootPart.type, '83');
    assert.equal(rootPart.start, boot.start + boot.size);
    assert.equal(data.type, '83');
    assert.equal(data.start, rootPart.start + rootPart.size);
    assert.equal(data.size, 16 * 2048);
    assert.equal(data.start % 2048, 0, 'partitions on whole MiB');

    // boot: FAT read with mtools, no mount
    const fat = `${img}@@${boot.start * 512}`;
    const { stdout: listing } = await sh('mdir', ['-b', '-i', fat, '::/']);
    const names = listing.split('\n').filter(Boolean).map((l) => l.replace(/^::\//, '')).sort();
    assert.deepEqual(names, ['bcm2711-rpi-4-b.dtb', 'bcm2711-rpi-5-b.dtb', 'bcm2837-rpi-3-b.dtb', 'bootcode.bin', 'cmdline.txt', 'config.txt', 'initrd.img', 'overlays/', 'start4.elf', 'vmlinuz'].sort());
    assert.equal((await sh('mtype', ['-i', fat, '::/vmlinuz'])).stdout, 'new kernel\n', 'the newest kernel, under a fixed name');
    assert.equal((await sh('mtype', ['-i', fat, '::/initrd.img'])).stdout, 'new initrd\n');
    const { stdout: label } = await sh('mlabel', ['-s', '-i', fat, '::']);
    assert.match(label, /MOAT-BOOT/);
    const cmdline = (await sh('mtype', ['-i', fat, '::/cmdline.txt'])).stdout;
    assert.equal(cmdline.split('\n').filter(Boolean).length, 1, 'cmdline.txt is one line');
    assert.match(cmdline, /(^| )root=PARTUUID=6d6f6174-02( |$)/);
    assert.match(cmdline, /(^| )rootfstype=squashfs( |$)/);
    assert.match(cmdline, /(^| )ro( |$)/);
    const config = (await sh('mtype', ['-i', fat, '::/config.txt'])).stdout.split('\n');
    assert.ok(config.includes('enable_uart=1'), 'the serial console');
    assert.ok(config.includes('arm_64bit=1'));
    assert.ok(config.includes('kernel=vmlinuz'));
    assert.ok(config.includes('initramfs initrd.img followkernel'));
    assert.ok(!config.some((l) => l.startsWith('dtoverlay=')), 'no overlays: Debian ships none');
    // the front panel: nodes in the board device trees that a profile names, from its pins
    for (const [dtb, board] of [['bcm2711-rpi-4-b.dtb', 'pi4'], ['bcm2837-rpi-3-b.dtb', 'pi3']] as const) {
      const out = join(dir, dtb);
      await sh('mcopy', ['-i', fat, `::/${dtb}`, out]);
      const dts = decompileDtb(out);
      const p = loadProfile(board);
      for (const [name, led] of Object.entries(p.leds)) assert.match(dts, new RegExp(`label = "${name}";\\s*gpios = <0x[0-9a-f]+ 0x${led!.gpio.toString(16).padStart(2, '0')} 0x00>;`), `${dtb}: ${name}`);
      assert.match(dts, /moat-button \{\s*compatible = "gpio-keys";/, `${dtb}: the button`);
    }
    await sh('mcopy', ['-i', fat, '::/bcm2711-rpi-5-b.dtb', join(dir, 'other.dtb')]);
    assert.doesNotMatch(decompileDtb(join(dir, 'other.dtb')), /moat-leds/, 'a DTB no profile names is left alone');

    // root: a squashfs of the stand-in root, without the firmware and the kernel copies
    const sq = await extract(img, rootPart, join(dir, 'p2'));
    assert.equal((await readFile(sq)).subarray(0, 4).toString('latin1'), 'hsqs');
    const { stdout: files } = await sh('unsquashfs', ['-lls', '-d', '', sq]);
    assert.match(files, /^-rwxr-xr-x root\/root .* \/usr\/bin\/hello$/m);
    assert.match(files, / \/etc\/systemd\/system\/moatd\.service$/m);
    assert.match(files, / \/usr\/lib\/moat\/factory\.json$/m);
    assert.doesNotMatch(files, /boot\/firmware\/.|vmlinuz|initrd\.img/, 'the kernel and firmware live on the boot partition only');

    // data: ext4 labelled moat-data, /moat owned by the moat user with the factory configuration
    const p3 = await extract(img, data, join(dir, 'p3'));
    const { stdout: super_ } = await sh('dumpe2fs', ['-h', p3]);
    assert.match(super_, /^Filesystem volume name:\s+moat-data$/m);
    const { stdout: moatDir } = await sh('debugfs', ['-R', 'stat moat', p3]);
    assert.match(moatDir, /User:\s+990\s+Group:\s+990/);
    assert.match(moatDir, /Mode:\s+0750/);
    const { stdout: factory } = await sh('debugfs', ['-R', 'cat moat/config.json', p3]);
    assert.deepEqual(JSON.parse(factory), JSON.parse(await readFile(join(REPO, 'board/rootfs/usr/lib/moat/factory.json'), 'utf8')));
    const { stdout: sys } = await sh('debugfs', ['-R', 'ls -p system', p3]);
    assert.match(sys, /\/systemd\//, 'the bind-mount source for /var/lib/systemd');
    await sh('e2fsck', ['-fn', p3]);

    // checksum and block map beside the image
    await run('sha256sum', ['-c', 'moat.img.sha256'], { cwd: join(dir, 'out') });
    assert.match(await readFile(`${img}.bmap`, 'utf8'), /<bmap version=/);

    // the same inputs and SOURCE_DATE_EPOCH give the same bytes
    const again = join(dir, 'again/moat.img');
    await sh('bash', ['scripts/assemble-image.sh', '--root', root, '--output', again, '--boot-mib', '64', '--data-mib', '16'], { env });
    const sum = async (f: string) => (await sh('sha256sum', [f])).stdout.split(' ')[0];
    assert.equal(await sum(again), await sum(img), 'bit-for-bit reproducible');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('assemble-image.sh refuses a root without a kernel, and bad sizes, by name', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'moat-image-'));
  try {
    const root = await standInRoot(dir);
    await rm(join(root, 'boot/vmlinuz-6.1.0-9-arm64'));
    await rm(join(root, 'boot/vmlinuz-6.1.0-10-arm64'));
    await assert.rejects(sh('bash', ['scripts/assemble-image.sh', '--root', root, '--output', join(dir, 'x.img')]), /no kernel \(boot\/vmlinuz-\*\)/);
    await assert.rejects(sh('bash', ['scripts/assemble-image.sh', '--root', join(dir, 'nope'), '--output', join(dir, 'x.img')]), /--root DIR: not a directory/);
    await assert.rejects(sh('bash', ['scripts/assemble-image.sh', '--root', root, '--output', join(dir, 'x.img'), '--data-mib', 'lots']), /--data-mib: at least 16/);
    await assert.rejects(readFile(join(dir, 'x.img')), { code: 'ENOENT' });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('the units pass systemd-analyze verify and carry their hardening', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'moat-units-'));
  try {
    // a root with the image's files, the host's systemd units and a real node where the image has it
    const root = join(dir, 'root');
    await cp(join(REPO, 'board/rootfs'), root, { recursive: true });
    await cp('/usr/lib/systemd/system', join(root, 'usr/lib/systemd/system'), { recursive: true, verbatimSymlinks: true });
    await copyFile(process.execPath, join(root, 'usr/lib/moat/bin/node'));
    await mkdir(join(root, 'usr/bin'), { recursive: true });
    await copyFile('/usr/bin/systemctl', join(root, 'usr/bin/systemctl')); // as the image has it (systemd)
    const units = (await readdir(join(root, 'etc/systemd/system'))).filter((f) => /\.(service|path)$/.test(f)).sort();
    assert.deepEqual(units, ['moat-grow-data.service', 'moat-network.path', 'moat-network.service', 'moat-panel.service', 'moat-reboot.path', 'moat-reboot.service', 'moatd.service']);
    const r = await sh('systemd-analyze', ['verify', `--root=${root}`, ...units]);
    assert.equal(r.stderr, '', 'no warnings');

    const unit = async (n: string) => (await readFile(join(REPO, 'board/rootfs/etc/systemd/system', n), 'utf8')).split('\n');
    const moatd = await unit('moatd.service');
    for (const l of ['User=moat', 'Type=notify', 'NotifyAccess=all', 'WatchdogSec=30', 'AmbientCapabilities=CAP_NET_BIND_SERVICE', 'CapabilityBoundingSet=CAP_NET_BIND_SERVICE', 'NoNewPrivileges=yes', 'ProtectSystem=strict', 'ReadWritePaths=/data/moat'])
      assert.ok(moatd.includes(l), `moatd.service: ${l}`);
    assert.ok(moatd.some((l) => /^MemoryMax=\d+M$/.test(l)));
    const panel = await unit('moat-panel.service');
    for (const l of ['User=moatpanel', 'NoNewPrivileges=yes', 'ProtectSystem=strict', 'RuntimeDirectory=moat-panel']) assert.ok(panel.includes(l), `moat-panel.service: ${l}`);
    // the console's reboot: a request file in the panel's runtime directory, acted on by a root path unit
    assert.ok(panel.some((l) => l.startsWith('ExecStart=') && l.endsWith('--reboot-request /run/moat-panel/reboot')));
    assert.ok((await unit('moat-reboot.path')).includes('PathExists=/run/moat-panel/reboot'));
    assert.ok((await unit('moat-reboot.service')).includes('ExecStart=/usr/bin/systemctl --no-block reboot'));
    assert.ok(!panel.some((l) => l.startsWith('ReadWritePaths=')), 'moat-panel writes nothing on disk');
    assert.ok(!panel.join('\n').includes('CAP_NET_BIND_SERVICE'), 'only moatd binds port 25');
    assert.ok(panel.some((l) => /^MemoryMax=\d+M$/.test(l)));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('fstab: root read-only squashfs, data ext4 by label, RAM for /tmp and /var/log', async () => {
  const rows = (await readFile(join(REPO, 'board/rootfs/etc/fstab'), 'utf8'))
    .split('\n')
    .filter((l) => l.trim() && !l.startsWith('#'))
    .map((l) => l.trim().split(/\s+/));
  const at = (mp: string) => rows.find((r) => r[1] === mp);
  const root = at('/')!;
  assert.equal(root[0], 'PARTUUID=6d6f6174-02');
  assert.equal(root[2], 'squashfs');
  assert.ok(root[3]!.split(',').includes('ro'));
  const data = at('/data')!;
  assert.deepEqual([data[0], data[2]], ['LABEL=moat-data', 'ext4']);
  assert.ok(data[3]!.split(',').includes('rw'));
  assert.equal(data[5], '2', 'the data partition is checked at boot');
  for (const mp of ['/tmp', '/var/log']) assert.equal(at(mp)?.[2], 'tmpfs', `${mp} in RAM`);
  const journald = await readFile(join(REPO, 'board/rootfs/etc/systemd/journald.conf.d/moat.conf'), 'utf8');
  assert.match(journald, /^Storage=volatile$/m);
});

test('the firewall ruleset parses (nft -c) and drops by default; sysctl hardening is set', async () => {
  await sh('nft', ['-c', '-f', 'board/rootfs/etc/nftables.conf']);
  const rules = await readFile(join(REPO, 'board/rootfs/etc/nftables.conf'), 'utf8');
  assert.match(rules, /type filter hook input priority filter; policy drop;/);
  assert.match(rules, /type filter hook forward priority filter; policy drop;/);
  assert.match(rules, /^\s*tcp dport 25 ct state new accept$/m);
  const sysctl = await readFile(join(REPO, 'board/rootfs/etc/sysctl.d/90-moat.conf'), 'utf8');
  for (const l of ['net.ipv4.conf.all.rp_filter = 1', 'net.ipv4.tcp_syncookies = 1', 'net.ipv4.ip_forward = 0']) assert.ok(sysctl.split('\n').includes(l), l);
});

test('the factory configuration is valid and fits the image: data on /data/moat, console on /dev/serial0, clock checked', async () => {
  const c = parseConfig(JSON.parse(await readFile(join(REPO, 'board/rootfs/usr/lib/moat/factory.json'), 'utf8')));
  assert.equal(c.storage.dataDir, '/data/moat');
  assert.equal(c.network.filesRoot, '/data/moat/os/');
  assert.equal(c.console.device, '/dev/serial0');
  assert.equal(c.health.clockSyncFile, '/run/systemd/timesync/synchronized');
  assert.equal(c.admin.mustChangePassword, true, 'the first login must change the factory password');
});

test('moatd --version and --check FILE (the image smoke test and flash.sh use them)', async () => {
  const node = process.execPath;
  const v = await sh(node, ['dist/moatd.js', '--version']);
  assert.match(v.stdout, /^moatd \d+\.\d+\.\d+ \(node v24\.\d+\.\d+, linux-\w+\)\n$/);
  const ok = await sh(node, ['dist/moatd.js', '--check', 'board/rootfs/usr/lib/moat/factory.json']);
  assert.match(ok.stdout, /factory\.json: valid configuration/);
  const dir = await mkdtemp(join(tmpdir(), 'moat-check-'));
  try {
    await writeFile(join(dir, 'bad.json'), JSON.stringify({ hostname: 'mx.example.com', inbound: { localDomains: [] }, internal: { servers: [] }, storage: { dataDir: '/x' } }));
    const bad = await sh(node, ['dist/moatd.js', '--check', join(dir, 'bad.json')]).then(
      () => assert.fail('an invalid file passed'),
      (e: { code: number; stderr: string }) => e,
    );
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /inbound\.localDomains: name at least one local domain/);
    await writeFile(join(dir, 'torn.json'), '{"hostname": "mx.exa');
    await assert.rejects(sh(node, ['dist/moatd.js', '--check', join(dir, 'torn.json')]), /torn\.json: .*JSON/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
