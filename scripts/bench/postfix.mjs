// Postfix for the relay benchmark: installs Debian's package when its test
// tools are missing, and runs a private Postfix instance as a relay.
import { existsSync, mkdirSync, writeFileSync, readFileSync, rmSync, chownSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { arch } from 'node:os';
import { register } from './cleanup.mjs';
import { run, startProcess, waitForPort, sleep, killTree } from './proc.mjs';

export const SMTP_SOURCE = '/usr/sbin/smtp-source';
export const SMTP_SINK = '/usr/sbin/smtp-sink';
export const POSTFIX = '/usr/sbin/postfix';

function log(msg) {
  console.error(`bench: ${msg}`);
}

/**
 * Makes sure smtp-source, smtp-sink and postfix exist, installing Debian's
 * `postfix` package ("No configuration") if not, and that the package's own
 * service is not left running. Throws if the tools are still missing.
 */
export async function ensurePostfixTools() {
  if ([SMTP_SOURCE, SMTP_SINK, POSTFIX].every((p) => existsSync(p))) return { installed: false };
  if (process.getuid?.() !== 0) throw new Error(`${SMTP_SOURCE}/${SMTP_SINK} missing and not root: apt-get install postfix`);
  log('smtp-source/smtp-sink missing: installing Debian package postfix (No configuration)…');
  const sel = await run('debconf-set-selections', [], {
    input: 'postfix postfix/main_mailer_type select No configuration\npostfix postfix/mailname string bench.invalid\n',
    timeoutMs: 60_000,
  });
  if (sel.code !== 0) throw new Error(`debconf-set-selections: ${sel.stderr.trim()}`);

  // Keep invoke-rc.d / deb-systemd-invoke from starting the service during
  // the install: a policy-rc.d that denies every action, only if none exists.
  const policy = '/usr/sbin/policy-rc.d';
  let policyHandle = null;
  if (!existsSync(policy)) {
    writeFileSync(policy, '#!/bin/sh\n# temporary, written by moat scripts/bench-relay.mjs\nexit 101\n', { mode: 0o755 });
    policyHandle = register('temporary /usr/sbin/policy-rc.d', async () => rmSync(policy, { force: true }), () => rmSync(policy, { force: true }));
  }
  try {
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive', DEBCONF_NONINTERACTIVE_SEEN: 'true' };
    const install = () =>
      run('apt-get', ['install', '-y', '-q', '--no-install-recommends', '-o', 'Dpkg::Options::=--force-confdef', '-o', 'Dpkg::Options::=--force-confold', 'postfix'], {
        env,
        timeoutMs: 600_000,
      });
    let r = await install();
    if (r.code !== 0) {
      log('apt-get install failed, running apt-get update and trying once more…');
      await run('apt-get', ['update', '-q'], { env, timeoutMs: 300_000 });
      r = await install();
    }
    if (r.code !== 0) throw new Error(`apt-get install postfix failed (${r.timedOut ? 'timed out' : `exit ${r.code}`}): ${(r.stderr || r.stdout).trim().split('\n').slice(-5).join(' | ')}`);
  } finally {
    await policyHandle?.done();
  }
  await stopSystemPostfix();
  if (![SMTP_SOURCE, SMTP_SINK, POSTFIX].every((p) => existsSync(p))) throw new Error('postfix installed but smtp-source/smtp-sink still missing');
  log('postfix installed');
  return { installed: true };
}

/** Stops the package's default instance if anything started it. */
async function stopSystemPostfix() {
  let systemd = false;
  try {
    systemd = readFileSync('/proc/1/comm', 'utf8').trim() === 'systemd';
  } catch {
    /* unknown */
  }
  if (systemd) await run('systemctl', ['stop', 'postfix.service', 'postfix@-.service'], { timeoutMs: 60_000 });
  const pidFile = '/var/spool/postfix/pid/master.pid';
  if (existsSync(pidFile)) {
    const pid = Number(readFileSync(pidFile, 'utf8').trim());
    let alive = false;
    try {
      process.kill(pid, 0);
      alive = true;
    } catch {
      /* not running */
    }
    if (alive) {
      log(`the package's own Postfix is running (pid ${pid}), stopping it`);
      await run(POSTFIX, ['stop'], { timeoutMs: 60_000 });
    }
  }
}

export async function postfixVersion() {
  const r = await run('/usr/sbin/postconf', ['-d', '-h', 'mail_version'], { timeoutMs: 10_000 });
  return r.code === 0 ? r.stdout.trim() : null;
}

// The subreaper wrapper: PID 1 of a container often does not reap orphans, and
// Postfix's workers outlive the master by a moment when it stops. Running
// `postfix start-fg` under a child subreaper keeps every Postfix process in our
// tree (for RSS/CPU accounting) and leaves no zombies behind.
const REAPER = String.raw`
my $nr = shift @ARGV;
syscall($nr, 36, 1, 0, 0, 0) == 0 or die "prctl(PR_SET_CHILD_SUBREAPER): $!\n";
my $pid = fork();
die "fork: $!\n" unless defined $pid;
if ($pid == 0) { exec { $ARGV[0] } @ARGV or die "exec $ARGV[0]: $!\n"; }
$SIG{TERM} = sub { kill 'TERM', $pid };
$SIG{INT} = sub { kill 'TERM', $pid };
my $status = 0;
while ((my $w = wait()) != -1) { $status = $? if $w == $pid; }
exit($status & 127 ? 128 + ($status & 127) : $status >> 8);
`;
const PRCTL_NR = { x64: 157, arm64: 167, arm: 172, ia32: 172, riscv64: 167, ppc64: 171, s390x: 172 };

const MASTER_CF = (listen) => `# generated by moat scripts/bench-relay.mjs; no chroot, no local delivery
${listen} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`;

/**
 * Starts a private Postfix relay: config in `confDir`, queue and data dirs
 * under `spoolDir` (on the spool file system under test), SMTP on
 * 127.0.0.1:`port`, everything for example.com relayed to 127.0.0.1:`sinkPort`.
 * Returns { pid (of the wrapper, root of the Postfix tree), maillog, stop() }.
 */
export async function startPostfix({ confDir, spoolDir, logDir, port, sinkPort, name, extraMainCf = '' }) {
  const queueDir = join(spoolDir, 'queue');
  const dataDir = join(spoolDir, 'data');
  for (const d of [confDir, queueDir, dataDir, logDir]) mkdirSync(d, { recursive: true });
  // the mail_owner must be able to reach data_directory and the queue
  for (const d of [confDir, spoolDir, logDir]) chmodSync(d, 0o755);
  const { uid, gid } = postfixIds();
  chownSync(dataDir, uid, gid);
  const maillog = join(logDir, 'maillog');
  writeFileSync(
    join(confDir, 'main.cf'),
    `# generated by moat scripts/bench-relay.mjs
compatibility_level = 3.6
queue_directory = ${queueDir}
data_directory = ${dataDir}
mail_owner = postfix
setgid_group = postdrop
syslog_name = ${name}
maillog_file = ${maillog}
maillog_file_prefixes = ${logDir}
myhostname = relay.bench.test
mydomain = bench.test
myorigin = $myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
mydestination =
local_recipient_maps =
local_transport = error:5.1.1 local delivery is disabled
alias_maps =
alias_database =
relay_domains = example.com
relay_recipient_maps =
transport_maps = inline:{ example.com=relay:[127.0.0.1]:${sinkPort} }
smtpd_relay_restrictions = permit_mynetworks reject_unauth_destination
message_size_limit = 26214400
smtpd_peername_lookup = no
biff = no
${extraMainCf}`,
  );
  writeFileSync(join(confDir, 'master.cf'), MASTER_CF(`127.0.0.1:${port}`));

  const check = await postfixCommand(['-c', confDir, 'check'], 60_000);
  if (check.code !== 0) throw new Error(`postfix check failed: ${check.output || `exit ${check.code}`}`);

  const nr = PRCTL_NR[arch()];
  const cmd = nr ? 'perl' : POSTFIX;
  const args = nr ? ['-e', REAPER, String(nr), POSTFIX, '-c', confDir, 'start-fg'] : ['-c', confDir, 'start-fg'];
  const proc = startProcess(`postfix ${name}`, cmd, args);
  const ok = await waitForPort(port, { timeoutMs: 30_000, alive: () => !proc.exitInfo });
  const readLog = () => (existsSync(maillog) ? readFileSync(maillog, 'utf8') : '');
  // `postfix stop` lets busy workers finish "at their earliest convenience"
  // (idle ones can linger up to max_idle); give it a few seconds, then abort.
  const stop = async () => {
    if (!proc.exitInfo) {
      await run(POSTFIX, ['-c', confDir, 'stop'], { timeoutMs: 30_000, cleanup: true });
      let r = await Promise.race([proc.exited, sleep(5_000).then(() => null)]);
      if (!r) {
        await run(POSTFIX, ['-c', confDir, 'abort'], { timeoutMs: 15_000, cleanup: true });
        r = await Promise.race([proc.exited, sleep(5_000).then(() => null)]);
      }
      if (!r) killTree(proc.pid, 'SIGKILL');
    }
    await proc.stop(3000);
  };
  const handle = register(`postfix instance ${confDir}`, stop, () => {
    spawnSync(POSTFIX, ['-c', confDir, 'abort'], { timeout: 10_000, stdio: 'ignore' });
    killTree(proc.pid, 'SIGKILL');
  });
  if (!ok) {
    await handle.done();
    const why = [proc.stderr.text, proc.stdout.text, readLog()].join('\n').split('\n').filter((l) => /fatal|error|warning/i.test(l));
    throw new Error(`Postfix did not start listening on 127.0.0.1:${port}: ${why.slice(-4).join(' | ') || 'no reason logged'}`);
  }
  return {
    pid: proc.pid,
    maillog,
    readLog,
    stop: () => handle.done(),
  };
}

const shq = (s) => `'${String(s).replace(/'/g, `'\\''`)}'`;

/**
 * Runs postfix(1). It prints its errors to stderr only when that is a
 * terminal (otherwise they go to syslog / maillog_file, which may not exist
 * yet), so run it under script(1) for a pseudo-terminal when available.
 */
async function postfixCommand(args, timeoutMs) {
  if (existsSync('/usr/bin/script')) {
    const r = await run('/usr/bin/script', ['-q', '-e', '-c', [POSTFIX, ...args].map(shq).join(' '), '/dev/null'], { timeoutMs });
    return { code: r.timedOut ? null : r.code, output: (r.stdout + r.stderr).replace(/\r/g, '').trim() };
  }
  const r = await run(POSTFIX, args, { timeoutMs });
  return { code: r.timedOut ? null : r.code, output: (r.stdout + r.stderr).trim() };
}

function postfixIds() {
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('postfix:'));
  if (!line) throw new Error('no postfix user in /etc/passwd');
  const f = line.split(':');
  return { uid: Number(f[2]), gid: Number(f[3]) };
}

/** Summarises why a Postfix row fell short, from its maillog. */
export function maillogSummary(text) {
  const count = (re) => (text.match(re) ?? []).length;
  const problems = text
    .split('\n')
    .filter((l) => /(fatal|panic|error|warning):/.test(l) || /status=(deferred|bounced)/.test(l))
    .slice(-3);
  return { sent: count(/status=sent/g), deferred: count(/status=deferred/g), bounced: count(/status=bounced/g), problems };
}

