// The serial console end to end: moatd with its store and control socket, moat-panel on one end of a
// real pseudo-terminal pair (socat), and the test as the admin's terminal on the other end (serialport).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startSink } from './helpers/sink.ts';
import { RawSmtp, rcptReply } from './helpers/smtp-client.ts';
import { startStoredMoat } from './helpers/control.ts';
import { ptyPair, Terminal } from './helpers/pty.ts';
import { startPanel } from '../firmware/console/panel.ts';

const rcpt = rcptReply;

/** A deterministic stream of random bytes (xorshift), as from a wrong baud rate. */
function noise(n: number, seed = 0x2545f491): Buffer {
  const b = Buffer.alloc(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

test('console: log in, forced new password, set a local domain, commit, SMTP takes it, rollback 1 undoes it; lockout; noise; long lines; Ctrl-C', async () => {
  const sink = await startSink();
  const m = await startStoredMoat(sink.port);
  const pty = await ptyPair(m.dir);
  let reboots = 0;
  const panel = await startPanel({
    configPath: m.configPath,
    device: pty.a,
    lockout: { failDelayMs: 20, lockMs: 60_000 },
    reboot: async () => void reboots++,
  });
  const t = await Terminal.open(pty.b);
  const P = /admin@mx> $/;
  const C = /admin@mx# $/;
  try {
    await t.send('\r'); // wake the console: an empty login just prompts again
    await t.expect(/login: $/);
    await t.send('admin\r');
    await t.expect(/Password: $/);
    await t.send('moat\r');
    await t.expect(/factory password/);
    await t.expect(/New password: $/);
    await t.send('short\r');
    await t.expect(/at least 8 characters/);
    await t.expect(/New password: $/);
    await t.send('correct horse\r');
    await t.expect(/Retype new password: $/);
    await t.send('correct horse\r');
    await t.expect(/password changed \(revision \d+\)/);
    await t.expect(P);
    assert.ok(!t.out.includes('correct horse') && !t.out.includes('moat\r'), 'passwords are not echoed');
    const hash = m.store.config.admin.passwordHash;
    assert.match(hash ?? '', /^scrypt\$/);
    assert.equal(m.store.config.admin.mustChangePassword, false);

    // help and completion
    await t.send('sh?');
    await t.expect(/show\s+show the state of moat/);
    await t.send('\x15'); // Ctrl-U
    await t.send('show st\t');
    await t.expect(/show status $/);
    await t.send('\r');
    await t.expect(/health\s+ok/);
    await t.expect(P);

    // configuration mode
    await t.send('configure\r');
    await t.expect(C);
    await t.send('set inbound.loc\t');
    await t.expect(/set inbound\.localDomains $/);
    await t.send('example.com example.net\r');
    await t.expect(C);
    await t.send('set inbound.maxMessageSize big\r');
    await t.expect(/inbound\.maxMessageSize: expected a number, got "big"/);
    await t.send('show | compare\r');
    await t.expect(/\+ inbound\.localDomains\[1\]: "example\.net"/);
    await t.expect(C);
    assert.match(await rcpt(m.daemon.port, 'bob@example.net'), /^554 5\.7\.1/);
    await t.send('commit\r');
    await t.expect(/commit complete: revision (\d+)/);
    await t.expect(C);
    assert.match(await rcpt(m.daemon.port, 'bob@example.net'), /^250/, 'moatd accepts the new domain');
    await t.send('rollback 1\r');
    await t.expect(/rolled back 1: revision \d+ is running/);
    await t.expect(C);
    assert.match(await rcpt(m.daemon.port, 'bob@example.net'), /^554 5\.7\.1/, 'rollback 1 undid it');
    assert.equal(m.store.config.admin.passwordHash, hash, 'the password change stays');
    await t.send('exit\r');
    await t.expect(P);

    // Ctrl-C in the middle of a command leaves a fresh line
    await t.send('show sta\x03');
    await t.expect(/\^C\r\n/);
    await t.expect(P);
    await t.send('show status\r');
    await t.expect(/health/);
    await t.expect(P);

    // line noise, as from a wrong baud rate, then a terminal that talks sense again. The noise has
    // no CR or LF: with them a random line could be a valid command (`e` is `exit`), which would be
    // the console working, not failing; every byte value is fed to the line editor in its unit test
    await t.send(Buffer.from(noise(4096).filter((b) => b !== 13 && b !== 10)));
    await t.send('~'.repeat(20) + '\x03');
    await t.send('show status\r');
    await t.expect(/health\s+ok[\s\S]*admin@mx> $/);
    // a 100 KB line is cut at the line limit and refused; the console goes on
    await t.send('x'.repeat(100 * 1024) + '\r');
    await t.expect(/unknown command "x{20,}/);
    await t.expect(P);
    await t.send('show status\r');
    await t.expect(/health\s+ok/);
    await t.expect(P);

    // paging: the running configuration is longer than a page
    await t.send('show config\r');
    await t.expect(/"hostname": "mx\.example\.com"[\s\S]*--More--$/);
    await t.send(' ');
    const rest = await t.expect(P);
    assert.match(t.out.slice(t.out.length - 2000), /"control"/, 'space showed the rest');
    void rest;
    await t.send('show config\r');
    await t.expect(/--More--$/);
    await t.send('q');
    await t.expect(/^\r\x1b\[Kadmin@mx> $/);
    await t.send('test delivery postmaster@example.com\r');
    await t.expect(/test message to postmaster@example\.com queued as [0-9A-F]{16}/);
    await t.expect(P);

    // reboot asks first
    await t.send('reboot\r');
    await t.expect(/reboot the appliance now\? \[yes\/no\] $/);
    await t.send('no\r');
    await t.expect(/not rebooted/);
    assert.equal(reboots, 0);

    // log out; five wrong passwords lock the login, even for the right one
    await t.send('exit\r');
    await t.expect(/logged out/);
    for (let i = 1; i <= 5; i++) {
      await t.expect(/login: $/);
      await t.send('admin\r');
      await t.expect(/Password: $/);
      await t.send(`wrong${i}\r`);
      await t.expect(/Login incorrect/);
    }
    await t.expect(/login locked for \d+ s after 5 failed attempts/);
    await t.expect(/login: $/);
    await t.send('admin\r');
    await t.expect(/Password: $/);
    await t.send('correct horse\r');
    await t.expect(/login locked after 5 failed attempts; try again in \d+ s/);
    await t.expect(/login: $/);
  } finally {
    await t.close();
    await panel.close();
    await pty.close();
    await m.stop();
    await sink.close();
  }
});

test('console: commit confirmed, queue hold from the console, and idle logout', async () => {
  const { hashPassword } = await import('../firmware/console/auth.ts');
  const { closedPort } = await import('./helpers/sink.ts');
  const down = await closedPort(); // the internal server is down: mail stays queued
  // a DNS server that never answers, so that a lookup runs until it is abandoned
  const { createSocket } = await import('node:dgram');
  const mute = createSocket('udp4');
  await new Promise<void>((r) => mute.bind(0, '127.0.0.1', () => r()));
  const m = await startStoredMoat(down, {
    extra: { admin: { passwordHash: await hashPassword('correct horse'), mustChangePassword: false }, console: { idleTimeoutMs: 2500 } },
    daemon: { dnsServers: [`127.0.0.1:${mute.address().port}`] },
  });
  const pty = await ptyPair(m.dir);
  const panel = await startPanel({ configPath: m.configPath, device: pty.a, reboot: async () => undefined });
  const t = await Terminal.open(pty.b);
  const P = /admin@mx> $/;
  const C = /admin@mx# $/;
  try {
    await t.send('\r');
    await t.expect(/login: $/);
    await t.send('admin\r');
    await t.expect(/Password: $/);
    await t.send('correct horse\r');
    await t.expect(P);
    assert.ok(!t.out.includes('factory password'), 'no forced change once changed');

    await t.send('configure\r');
    await t.expect(C);
    await t.send('set inbound.localDomains example.com example.net\r');
    await t.expect(C);
    await t.send('commit confirmed 5\r');
    await t.expect(/commit complete: revision \d+\r\nrolls back at \S+ unless you commit again/);
    await t.expect(C);
    await t.send('exit\r');
    await t.expect(P);
    await t.send('show status\r');
    await t.expect(/must be confirmed by \S+ or it rolls back to \d+/);
    await t.expect(P);
    await t.send('configure\r');
    await t.expect(C);
    await t.send('commit\r');
    await t.expect(/commit confirmed/);
    await t.expect(C);
    await t.send('exit\r');
    await t.expect(P);

    // a message waits in the queue; hold it from the console
    const c = await RawSmtp.greeted(m.daemon.port);
    await c.cmd('MAIL FROM:<a@sender.example>');
    await c.cmd('RCPT TO:<bob@example.net>');
    await c.cmd('DATA');
    const id = /queued as ([0-9A-F]{16})/.exec(await c.cmd('Subject: x\r\n\r\nbody\r\n.'))![1]!;
    c.end();
    await t.send('show queue\r');
    await t.expect(new RegExp(`${id}  (ready|active|deferred)`));
    await t.expect(P);
    await t.send(`queue hold ${id.slice(0, 6)}\t`); // completion of the queue id
    await t.expect(new RegExp(`queue hold ${id} $`));
    await t.send('\r');
    await t.expect(new RegExp(`${id} is on hold`));
    await t.expect(P);
    await t.send('show queue\r');
    await t.expect(new RegExp(`${id}  held`));
    await t.expect(P);

    // Ctrl-C abandons a command that is still running
    await t.send('dig mx example.org\r');
    await t.send('\x03');
    await t.expect(/\^C \(abandoned\)\r\nadmin@mx> $/);
    await t.send('show status\r');
    await t.expect(/health/);
    await t.expect(P);

    // no keystroke for console.idleTimeoutMs: logged out
    await t.expect(/idle for too long: logged out[\s\S]*login: $/);
    assert.equal(m.store.config.inbound.localDomains.length, 2, 'the confirmed commit stayed');
  } finally {
    await t.close();
    await panel.close();
    await pty.close();
    await m.stop();
    mute.close();
  }
});
