/*
 * health/probes.ts: the cheap checks behind the health model: an SMTP
 * greeting from an internal server, a PONG from clamd, a DNS answer, the free
 * space and writability of the data partition, the expiry of a certificate,
 * whether the system clock has been synchronised.
 *
 * Each probe answers within its timeout and never throws: it returns
 * { ok: false, detail } with a short reason. Must never send a message, hold
 * a connection open, read more than a few KiB from a peer or put secrets or
 * file contents into a detail. Called by health/monitor.ts.
 */
import { X509Certificate } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { access, open, readFile, statfs, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { DnsResolver, type DnsSettings } from '../dns/resolver.ts';
import { parseClamdAddress } from '../scan/clamd.ts';

export type ProbeResult = { ok: true; detail?: string } | { ok: false; detail: string };

/** Most bytes a probe reads from a peer before it gives up on it. */
const MAX_READ = 4096;

/**
 * Connects, reads the first reply line and hangs up. `expect` decides whether
 * the line is a good one; a peer that says nothing within timeoutMs has failed.
 */
function talk(target: { host: string; port: number } | { path: string }, hello: string | null, expect: RegExp, timeoutMs: number, what: string): Promise<ProbeResult> {
  return new Promise((resolve) => {
    let got = '';
    let done = false;
    const socket: Socket = 'path' in target ? connect(target.path) : connect(target.port, target.host);
    const finish = (r: ProbeResult) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => finish({ ok: false, detail: `${what}: no answer within ${timeoutMs} ms` }), timeoutMs);
    socket.setEncoding('latin1');
    socket.on('connect', () => {
      if (hello !== null) socket.write(hello);
    });
    socket.on('data', (chunk: string) => {
      got += chunk;
      const nl = got.indexOf('\n');
      const line = (nl >= 0 ? got.slice(0, nl) : got).replace(/[\r\0]+$/, '');
      if (nl < 0 && got.length < MAX_READ && !got.includes('\0')) return;
      if (expect.test(line)) {
        if (hello === null) socket.end('QUIT\r\n');
        finish({ ok: true });
      } else finish({ ok: false, detail: `${what}: unexpected answer ${JSON.stringify(line.slice(0, 80))}` });
    });
    socket.on('error', (e: NodeJS.ErrnoException) => finish({ ok: false, detail: `${what}: ${e.code ?? e.message}` }));
    socket.on('close', () => finish({ ok: false, detail: `${what}: closed without an answer` }));
  });
}

/** An internal server's SMTP greeting (220), then QUIT: no message, no EHLO. */
export function probeSmtp(host: string, port: number, timeoutMs: number): Promise<ProbeResult> {
  return talk({ host, port }, null, /^220[ -]/, timeoutMs, `${host}:${port}`);
}

/** clamd's zPING → PONG, on a unix socket or HOST:PORT. */
export function probeClamd(address: string, timeoutMs: number): Promise<ProbeResult> {
  const a = parseClamdAddress(address);
  if (!a) return Promise.resolve({ ok: false, detail: `clamd ${address}: not a clamd address` });
  return talk(a, 'zPING\0', /^PONG$/, timeoutMs, `clamd ${address}`);
}

/**
 * Asks the MX of `name` through a fresh resolver (nothing cached). "No such
 * name" and "no data" are answers too: only a timeout or a server failure
 * means DNS is not answering.
 */
export async function probeDns(settings: DnsSettings, name: string, timeoutMs: number): Promise<ProbeResult> {
  const r = new DnsResolver({ ...settings, timeoutMs: Math.min(settings.timeoutMs, timeoutMs) });
  try {
    await r.resolve(name, 'MX');
    return { ok: true };
  } catch (e) {
    const code = (e as { code?: string }).code ?? 'EFAIL';
    if (code === 'ENOTFOUND' || code === 'ENODATA') return { ok: true, detail: code };
    return { ok: false, detail: `MX ${name}: ${code}` };
  }
}

export type DiskResult = { writable: ProbeResult; freeBytes: number | null };

/** Free bytes of the partition holding dir, and whether a small file can be written and synced there. */
export async function probeDisk(dir: string): Promise<DiskResult> {
  let freeBytes: number | null = null;
  try {
    const s = await statfs(dir);
    freeBytes = s.bavail * s.bsize;
  } catch {
    freeBytes = null;
  }
  const file = join(dir, '.health-probe');
  let writable: ProbeResult;
  try {
    const fh = await open(file, 'w', 0o600);
    try {
      await fh.write('moat health probe\n');
      await fh.sync();
    } finally {
      await fh.close();
    }
    writable = { ok: true };
  } catch (e) {
    writable = { ok: false, detail: `cannot write ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` };
  }
  await unlink(file).catch(() => undefined);
  return { writable, freeBytes };
}

/** The certificate's end of validity, or why it cannot be read. */
export async function certificateExpiry(certFile: string): Promise<{ notAfter: Date } | { error: string }> {
  try {
    const cert = new X509Certificate(await readFile(certFile));
    return { notAfter: new Date(cert.validTo) };
  } catch (e) {
    return { error: `cannot read the certificate ${certFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` };
  }
}

/**
 * Whether the system clock is synchronised: systemd-timesyncd creates
 * /run/systemd/timesync/synchronized once it has set the clock from NTP (a Pi
 * has no battery-backed clock, so until then the time may be days off).
 */
export async function probeClockSync(file: string): Promise<ProbeResult> {
  try {
    await access(file);
    return { ok: true };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'EFAIL';
    return { ok: false, detail: code === 'ENOENT' ? `the system clock is not synchronised yet (no ${file})` : `cannot check ${file}: ${code}` };
  }
}
