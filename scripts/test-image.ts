/*
 * test-image.ts: the appliance image, end to end (`npm run test:image`).
 *
 * Builds the real image (scripts/build-image.sh; the Debian base comes from its
 * cache after the first build), boots it under qemu-system-aarch64 (the virt
 * machine with the image's own kernel and initrd, taken out of its FAT with
 * mtools; the card behind a qcow2 overlay of 2 GiB, so the image stays as built
 * and the data partition has room to grow), serial console on a pseudo-terminal,
 * SMTP forwarded from a loopback port. Then, as an admin would: logs in on the
 * serial console (factory password, forced change), commits a local domain and
 * an internal server (a sink on this host, 10.0.2.2 from inside), sends a
 * message through the appliance and sees it arrive; hard-resets the emulator
 * (QEMU monitor system_reset) and checks that the commit survived and mail
 * still flows. Afterwards, from the overlay: the guest wrote nothing outside the
 * partition table and the data partition (the root and boot partitions were
 * never written), and the data partition grew to the end of the card.
 * Prints timings. Exit status 0 only when every check passed. `--no-build`
 * boots the image the last run built (for work on this script; CI builds).
 *
 * Must never touch the built image itself, or leave QEMU running.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import nodemailer from 'nodemailer';
import { startSink } from '../test/helpers/sink.ts';
import { Terminal } from '../test/helpers/pty.ts';

const run = promisify(execFile);
const REPO = resolve(import.meta.dirname, '..');
const IMAGE = join(REPO, 'out/test-image/moat.img');
const DISK = 2 * 1024 * 1024 * 1024;
const PASSWORD = 'image test 2026';
const BOOT_TIMEOUT = 600_000;
const t0 = Date.now();
const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const timings: Array<[string, string]> = [];
const say = (m: string) => process.stderr.write(`test-image: ${m}\n`);

function check(ok: unknown, what: string): asserts ok {
  if (!ok) throw new Error(`FAILED: ${what}`);
  say(`ok: ${what}`);
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** The first reply line of an SMTP server, or null (QEMU accepts the forwarded connection before the guest does). */
function greeting(port: number): Promise<string | null> {
  return new Promise((res) => {
    let got = '';
    const s = connect(port, '127.0.0.1');
    const done = (v: string | null) => (s.destroy(), clearTimeout(t), res(v));
    const t = setTimeout(() => done(null), 5000);
    s.setEncoding('latin1');
    s.on('data', (d: string) => {
      got += d;
      if (got.includes('\n')) done(got.split('\r\n')[0]!);
    });
    s.on('error', () => done(null));
    s.on('close', () => done(null));
  });
}

async function waitForSmtp(port: number, since: number): Promise<number> {
  for (;;) {
    const g = await greeting(port);
    if (g?.startsWith('220 ')) return Date.now() - since;
    if (Date.now() - since > BOOT_TIMEOUT) throw new Error(`FAILED: no SMTP greeting on the forwarded port within ${secs(BOOT_TIMEOUT)}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/** Presses Enter until the console's login prompt shows. */
async function waitForLogin(t: Terminal, since: number): Promise<void> {
  for (;;) {
    await t.send('\r');
    try {
      await t.expect(/login: $/, 5000);
      return;
    } catch {
      if (Date.now() - since > BOOT_TIMEOUT) throw new Error(`FAILED: no login prompt on the serial console within ${secs(BOOT_TIMEOUT)}`);
    }
  }
}

async function monitor(sock: string, command: string): Promise<void> {
  await new Promise<void>((res, rej) => {
    const s = connect(sock);
    let sent = false;
    s.on('error', rej);
    // the monitor greets with a banner and "(qemu) "; the command goes once, after it
    s.on('data', (d) => {
      if (!sent && d.toString().includes('(qemu)')) {
        sent = true;
        s.write(`${command}\n`);
        setTimeout(() => (s.end(), res()), 500);
      }
    });
  });
}

async function send(port: number, token: string): Promise<void> {
  const t = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true, name: 'client.example.net', connectionTimeout: 60_000, greetingTimeout: 60_000, socketTimeout: 120_000 });
  try {
    await t.sendMail({ from: 'sender@example.net', to: 'user@example.com', subject: `image test ${token}`, text: `through the emulated appliance: ${token}\n` });
  } finally {
    t.close();
  }
}

// --- build (--no-build: boot the image the previous run built, while working on this script) ---
const tb = Date.now();
const noBuild = process.argv.includes('--no-build');
await mkdir(join(REPO, 'out/test-image'), { recursive: true });
const build = spawn('bash', noBuild ? ['-c', 'test -s "$0"', IMAGE] : ['scripts/build-image.sh', '--output', IMAGE], { cwd: REPO, stdio: ['ignore', 'inherit', 'pipe'] });
let buildLog = '';
build.stderr!.on('data', (d: Buffer) => {
  buildLog += d;
  process.stderr.write(d);
});
const built = await new Promise<number | null>((r) => build.on('close', r));
if (built !== 0) throw new Error(`FAILED: build-image.sh exited with ${built}`);
timings.push([noBuild ? 'build (skipped: --no-build)' : `build (${buildLog.includes('base layer cached') ? 'base cached' : 'cold: base built'})`, secs(Date.now() - tb)]);

// --- kernel and initrd out of the image's FAT; a 2 GiB overlay over the image ---
const work = await mkdtemp(join(tmpdir(), 'moat-test-image-'));
let qemu: ChildProcess | null = null;
let term: Terminal | null = null;
const sink = await startSink();
// an interrupted run takes its emulator with it
for (const sig of ['SIGINT', 'SIGTERM'] as const)
  process.once(sig, () => {
    if (qemu && qemu.exitCode === null) qemu.kill('SIGKILL');
    process.exit(130);
  });
try {
  const table = JSON.parse((await run('sfdisk', ['--json', IMAGE], { encoding: 'utf8' })).stdout) as { partitiontable: { partitions: Array<{ start: number; size: number }> } };
  const parts = table.partitiontable.partitions;
  const fat = `${IMAGE}@@${parts[0]!.start * 512}`;
  await run('mcopy', ['-n', '-i', fat, '::/vmlinuz', join(work, 'vmlinuz')]);
  await run('mcopy', ['-n', '-i', fat, '::/initrd.img', join(work, 'initrd.img')]);
  // the front panel in Debian's own board device trees (QEMU's virt machine does not use them)
  for (const dtb of ['bcm2711-rpi-4-b.dtb', 'bcm2837-rpi-3-b.dtb', 'bcm2711-rpi-cm4-io.dtb']) {
    await run('mcopy', ['-n', '-i', fat, `::/${dtb}`, join(work, dtb)]);
    const dts = (await run('dtc', ['-q', '-I', 'dtb', '-O', 'dts', join(work, dtb)], { encoding: 'utf8' })).stdout;
    check(/moat-leds \{[^]*label = "moat:red:fault";[^]*moat-button \{[^]*linux,code = <0x198>;/.test(dts), `${dtb} carries the LEDs and the button`);
  }
  const disk = join(work, 'card.qcow2');
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', IMAGE, disk, String(DISK)]);

  const smtp = await freePort();
  const mon = join(work, 'monitor.sock');
  const args = [
    '-M', 'virt', '-cpu', 'cortex-a72', '-smp', '2', '-m', '1024', '-display', 'none',
    '-kernel', join(work, 'vmlinuz'), '-initrd', join(work, 'initrd.img'),
    '-append', 'console=ttyAMA0 root=PARTUUID=6d6f6174-02 rootfstype=squashfs ro rootwait net.ifnames=0 quiet',
    '-drive', `file=${disk},format=qcow2,if=none,id=card`, '-device', 'virtio-blk-pci,drive=card',
    '-netdev', `user,id=net,hostfwd=tcp:127.0.0.1:${smtp}-:25`, '-device', 'virtio-net-pci,netdev=net',
    '-serial', 'pty', '-monitor', `unix:${mon},server,nowait`,
  ];
  const tboot = Date.now();
  qemu = spawn('qemu-system-aarch64', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let qout = '';
  qemu.stdout!.on('data', (d) => (qout += d));
  qemu.stderr!.on('data', (d) => (qout += d));
  let pty = '';
  for (let i = 0; i < 200 && !pty; i++) {
    pty = /char device redirected to (\/dev\/pts\/\d+)/.exec(qout)?.[1] ?? '';
    if (qemu.exitCode !== null) throw new Error(`FAILED: qemu exited: ${qout}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  check(pty, `QEMU started, serial console on ${pty}`);
  term = await Terminal.open(pty);
  const serialLog = createWriteStream(join(REPO, 'out/test-image/serial.log'));
  term.port.on('data', (d: Buffer) => serialLog.write(d));

  // --- first boot: SMTP answers, the console logs in ---
  const toSmtp = await waitForSmtp(smtp, tboot);
  timings.push(['boot to SMTP (first boot)', secs(toSmtp)]);
  check(true, `moatd greets on the forwarded port after ${secs(toSmtp)}`);
  await waitForLogin(term, tboot);
  await term.send('admin\r');
  await term.expect(/Password: $/);
  await term.send('moat\r');
  await term.expect(/New password: $/, 30_000);
  await term.send(`${PASSWORD}\r`);
  await term.expect(/Retype new password: $/);
  await term.send(`${PASSWORD}\r`);
  await term.expect(/password changed \(revision \d+\)/, 60_000);
  await term.expect(/admin@[\w-]+> $/);
  check(true, 'logged in on the serial console with the factory password and changed it');

  await term.send('configure\r');
  await term.expect(/admin@[\w-]+# $/);
  await term.send('set inbound.localDomains example.com\r');
  await term.expect(/admin@[\w-]+# $/);
  await term.send(`set internal.servers [{"host":"10.0.2.2","port":${sink.port},"tls":"none"}]\r`);
  await term.expect(/admin@[\w-]+# $/);
  await term.send('commit\r');
  const committed = await term.expect(/commit complete: revision (\d+)/, 60_000);
  await term.expect(/admin@[\w-]+# $/);
  await term.send('exit\r');
  await term.expect(/admin@[\w-]+> $/);
  check(true, `committed example.com and the internal server 10.0.2.2:${sink.port} (revision ${committed[1]})`);

  const ts = Date.now();
  await send(smtp, 'first');
  const first = await sink.waitFor(1, 180_000);
  check(first[0]!.body.toString('latin1').includes('through the emulated appliance: first'), 'the message went through the appliance to the internal server');
  check(first[0]!.to.includes('user@example.com'), 'to the right recipient');
  timings.push(['message in → at the sink', secs(Date.now() - ts)]);

  // --- hard reset: what was committed survives ---
  const tr = Date.now();
  await monitor(mon, 'system_reset');
  say('system_reset sent');
  await new Promise((r) => setTimeout(r, 3000));
  const again = await waitForSmtp(smtp, tr);
  timings.push(['boot to SMTP (after hard reset)', secs(again)]);
  await waitForLogin(term, tr);
  await term.send('admin\r');
  await term.expect(/Password: $/);
  await term.send(`${PASSWORD}\r`);
  await term.expect(/admin@[\w-]+> $/, 30_000);
  check(true, 'after the hard reset the changed password logs in');
  await term.send('show config inbound.localDomains\r');
  await term.expect(/example\.com/);
  await term.expect(/admin@[\w-]+> $/);
  await term.send('show config internal.servers\r');
  await term.expect(new RegExp(`10\\.0\\.2\\.2[\\s\\S]*${sink.port}`));
  await term.expect(/admin@[\w-]+> $/);
  check(true, 'the committed configuration survived the hard reset');
  await send(smtp, 'second');
  // the reset came right after the first delivery: moat may deliver it again (a crash may
  // duplicate, never lose), so look for the second message among whatever arrives
  const has = (token: string) => sink.messages.some((m) => m.body.toString('latin1').includes(`through the emulated appliance: ${token}`));
  for (let n = 2; !has('second') && n <= 5; n++) await sink.waitFor(n, 180_000);
  check(has('second'), `mail flows after the reset (${sink.messages.length - 2} duplicate deliveries of the first, which a power cut right after a delivery allows)`);
  await term.send('exit\r');

  await monitor(mon, 'quit');
  await new Promise((r) => (qemu!.exitCode !== null ? r(null) : qemu!.once('exit', r)));
  qemu = null;
  serialLog.end();

  // --- from the overlay: where the guest wrote, and the grown data partition ---
  const map = JSON.parse((await run('qemu-img', ['map', '--output=json', disk], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 })).stdout) as Array<{ start: number; length: number; depth: number; data: boolean }>;
  const written = map.filter((m) => m.depth === 0 && m.data);
  const p3 = parts[2]!.start * 512;
  const outside = written.filter((m) => m.start + m.length > 65536 && m.start < p3);
  check(written.length > 0 && outside.length === 0, `the guest wrote only the partition table and the data partition (${written.length} extents; none in boot or root)`);
  const raw = join(work, 'card.raw');
  await run('qemu-img', ['convert', '-O', 'raw', disk, raw]);
  const grown = JSON.parse((await run('sfdisk', ['--json', raw], { encoding: 'utf8' })).stdout) as { partitiontable: { partitions: Array<{ start: number; size: number }> } };
  const g3 = grown.partitiontable.partitions[2]!;
  check((g3.start + g3.size) * 512 > DISK - 1024 * 1024, `the data partition grew to the end of the 2 GiB card (${Math.round((g3.size * 512) / 1048576)} MiB)`);
  await run('dd', [`if=${raw}`, `of=${join(work, 'p3')}`, 'bs=1M', `skip=${g3.start / 2048}`, 'status=none']);
  // QEMU's quit is a power cut too: replay the journal as the next boot would, then a full check must find nothing
  await run('e2fsck', ['-E', 'journal_only', '-y', join(work, 'p3')]).catch(() => undefined);
  const fsck = await run('e2fsck', ['-fn', join(work, 'p3')], { encoding: 'utf8' }).then(
    (r) => r.stdout,
    (e: { stdout: string }) => `FAILED ${e.stdout}`,
  );
  check(!fsck.startsWith('FAILED'), `the data partition is consistent after two power cuts (e2fsck -fn)${fsck.startsWith('FAILED') ? `: ${fsck}` : ''}`);
  const log = await readFile(join(REPO, 'out/test-image/serial.log'), 'latin1');
  check(!/\[FAILED\]/.test(log), 'no unit failed on the serial console (out/test-image/serial.log)');
} finally {
  if (qemu && qemu.exitCode === null) {
    qemu.kill('SIGKILL');
    await new Promise((r) => qemu!.once('exit', r));
  }
  await term?.close();
  await sink.close();
  await rm(work, { recursive: true, force: true });
}
timings.push(['whole run', secs(Date.now() - t0)]);
for (const [what, t] of timings) process.stdout.write(`test-image: ${what.padEnd(34)} ${t}\n`);
process.stdout.write('test-image: all checks passed\n');
process.exit(0);
