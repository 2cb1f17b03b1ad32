// The properties the fuzz tests check, shared by the fuzz targets (test/fuzz/*.test.ts) and
// the replay of inputs that once failed (test/fuzz/regressions.test.ts, fixtures under
// test/fixtures/fuzz/). Each check throws an AssertionError naming what broke; it must never
// pass an input it did not look at. Called by the test files in test/fuzz/ only.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parsePath } from '../../firmware/policy/address.ts';
import { MimeWalker, type MimeListener, type PartInfo, type MimeLimits } from '../../firmware/scan/mime.ts';
import type { Verdict } from '../../firmware/scan/pipeline.ts';
import { loadSignatureFiles, compileSignatures, SignatureFileError } from '../../firmware/scan/signatures/index.ts';
import { RawSmtp } from '../helpers/smtp-client.ts';
import { parseConfig, ConfigError } from '../../firmware/config/schema.ts';

// ---- envelope paths (firmware/policy/address.ts)

export const pathOutcomes = { accepted: 0, refused: 0 };
const REASON = /^[A-Za-z0-9 @.,()<>'-]{1,80}$/;

/** The properties of one envelope path (both outcomes are counted in pathOutcomes). */
export function checkPath(raw: string, allowNull: boolean): void {
  const r = parsePath(raw, { allowNull });
  if (!r.ok) {
    assert.match(r.reason, REASON, 'a refusal reason is a short constant');
    pathOutcomes.refused++;
    return;
  }
  if (r.mailbox === null) {
    assert.ok(allowNull, 'the null path only where it is allowed');
    assert.equal(raw, '<>');
    return;
  }
  const { local, domain, address } = r.mailbox;
  if (address === 'postmaster') {
    assert.ok(!allowNull);
    return;
  }
  assert.equal(address, `${local}@${domain}`);
  assert.ok(address.length + 2 <= 256, 'at most 256 octets with the brackets');
  assert.ok(local.length >= 1 && local.length <= 64, 'local part 1..64');
  assert.doesNotMatch(local, /[%!"@\s\x00-\x1f\x7f]/, 'nothing that routes or hides in the local part');
  assert.match(domain, /^(?=.{1,255}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$/, 'a lowercase LDH domain with a dot');
  assert.doesNotMatch(domain, /^[0-9.]+$/, 'no IPv4 literal as a domain');
  pathOutcomes.accepted++;
  const again = parsePath(`<${address}>`, { allowNull });
  assert.deepEqual(again, r, 'what is accepted parses back to the same mailbox');
}

// ---- the MIME walker (firmware/scan/mime.ts)

export const limits: MimeLimits = { maxHeaderBytes: 16 * 1024, maxHeaderFields: 100, maxPartHeaderBytes: 4 * 1024, maxParts: 20, maxDepth: 4 };

type Seen = { parts: Array<{ type: string; depth: number; encoding: string; filename: string | null; content: string }>; verdict: Verdict | null; decoded: number };

export function walk(msg: Buffer, cuts: number[]): Seen {
  const seen: Seen = { parts: [], verdict: null, decoded: 0 };
  let cur: Buffer[] = [];
  let open: PartInfo | null = null;
  const listener: MimeListener = {
    name: 'fuzz',
    partStart(p) {
      assert.equal(open, null, 'parts do not overlap');
      open = p;
      cur = [];
      return null;
    },
    partData(p, data, start, end) {
      assert.equal(p, open, 'data belongs to the open part');
      assert.ok(start >= 0 && start <= end && end <= data.length, 'a slice inside its buffer');
      cur.push(Buffer.from(data.subarray(start, end)));
      seen.decoded += end - start;
      return null;
    },
    partEnd(p) {
      assert.equal(p, open, 'the open part ends');
      seen.parts.push({ type: p.type, depth: p.depth, encoding: p.encoding, filename: p.filename, content: Buffer.concat(cur).toString('hex') });
      open = null;
      return null;
    },
  };
  const w = new MimeWalker([listener], limits);
  let at = 0;
  for (const c of [...cuts.map((k) => Math.min(k, msg.length)).sort((a, b) => a - b), msg.length]) {
    if (c > at) w.push(msg.subarray(at, c));
    at = Math.max(at, c);
  }
  seen.verdict = w.end();
  return seen;
}

/** The properties of one message walked whole and cut at `cuts`. */
export function checkMime(msg: Buffer, cuts: number[]): void {
  const one = walk(msg, []);
  assert.ok(one.parts.length <= limits.maxParts, `at most ${limits.maxParts} parts (${one.parts.length})`);
  assert.ok(one.parts.every((p) => p.depth <= limits.maxDepth), 'no part deeper than the limit');
  assert.ok(one.decoded <= msg.length, `decoded ${one.decoded} bytes of a ${msg.length}-byte message`);
  if (one.verdict) assert.match(one.verdict.text, /^[45]\.\d\.\d /, 'a verdict carries an enhanced status code');
  const split = walk(msg, cuts.map((c) => c % (msg.length + 1)));
  assert.deepEqual(split, one, 'the same result for any chunking');
}

// ---- the signature loaders (firmware/scan/signatures/load.ts)

let dirP: Promise<string> | null = null;
/** One scratch folder per test process, removed when it exits. */
function sigDir(): Promise<string> {
  dirP ??= mkdtemp(join(tmpdir(), 'moat-fuzz-sig-')).then((d) => {
    process.once('exit', () => rmSync(d, { recursive: true, force: true }));
    return d;
  });
  return dirP;
}

let n = 0;
export const signatureOutcomes = { loaded: 0, refused: 0 };

/** Writes one signature file, loads it and checks the outcome (counted in signatureOutcomes). */
export async function checkSignatureFile(ext: string, text: string): Promise<void> {
  const dir = await sigDir();
  const f = join(dir, `f${n++}.${ext}`);
  await writeFile(f, text, 'latin1');
  let set;
  try {
    set = await loadSignatureFiles([f]);
  } catch (e) {
    assert.ok(e instanceof SignatureFileError, `only a SignatureFileError, got ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
    assert.ok(e.message.startsWith(f), 'the error names the file');
    assert.ok(e.message.length < 1000, 'the error is short');
    signatureOutcomes.refused++;
    return;
  } finally {
    await rm(f, { force: true });
  }
  signatureOutcomes.loaded++;
  const db = await compileSignatures(set); // a loaded set compiles: the loader accepts nothing half understood
  const scanner = db.newScanner();
  scanner.push(Buffer.from('a harmless body with some bytes \x00\x01\xff in it'));
}

// ---- the SMTP dialogue through the wire

/** Sends the stream, then ends any DATA and says QUIT; returns every reply until moat closes. */
export async function session(port: number, from: string, stream: Buffer): Promise<string[]> {
  const c = await RawSmtp.open(port, '127.0.0.1', from);
  const replies: string[] = [];
  try {
    c.write(stream);
    c.write('\r\n.\r\nQUIT\r\n');
    for (;;) {
      let r: string;
      try {
        r = await c.reply(15_000);
      } catch (e) {
        if (c.closed) return replies; // moat closed the session: the end we wait for
        throw e; // no reply and still open: the session hangs
      }
      replies.push(r);
      assert.ok(replies.length < 2000, 'a bounded number of replies');
    }
  } finally {
    c.destroy();
  }
}

export function wellFormed(replies: string[]): void {
  for (const r of replies) {
    for (const line of r.split('\r\n')) assert.match(line, /^[2-5]\d\d[ -][\x20-\x7e]*$/, `a well-formed reply line: ${JSON.stringify(line)}`);
  }
}

export async function stillServes(port: number): Promise<void> {
  const c = await RawSmtp.open(port, '127.0.0.1', '127.0.0.250');
  try {
    assert.match(await c.reply(), /^220 /);
    assert.match(await c.cmd('EHLO client.example.net'), /^250/);
    assert.match(await c.cmd('MAIL FROM:<alice@sender.example>'), /^250 /);
    assert.match(await c.cmd('RCPT TO:<bob@example.com>'), /^250 /);
    assert.match(await c.cmd('DATA'), /^354 /);
    c.write('Subject: after the fuzz\r\n\r\nstill here\r\n.\r\n');
    assert.match(await c.reply(), /^250 /, 'a well-formed session is still accepted');
    await c.cmd('QUIT');
  } finally {
    c.destroy();
  }
}

// ---- the configuration schema (firmware/config/schema.ts)

export const configOutcomes = { accepted: 0, refused: 0 };
const PROBLEM = /^(\(top level\)|[^\s:]{1,200}): [^\r\n]{1,300}$/;

/**
 * parseConfig(doc) either returns a frozen configuration or throws a ConfigError whose every
 * problem is one line that starts with the path it is about; never another kind of throw.
 * `touched`: the path a mutation changed; a refusal then names a setting in the same section.
 */
export function checkConfig(doc: unknown, touched: string[] | null = null): void {
  let c: unknown;
  try {
    c = parseConfig(doc);
  } catch (e) {
    assert.ok(e instanceof ConfigError, `a ConfigError, not ${(e as Error)?.name}: ${(e as Error)?.message}`);
    assert.ok(e.problems.length >= 1 && e.problems.length <= 200, `1..200 problems, got ${e.problems.length}`);
    for (const p of e.problems) assert.match(p, PROBLEM, 'each problem is one line that starts with its path');
    if (touched && touched.length) {
      const sections = e.problems.map((p) => p.split(/[.:]/)[0]);
      assert.ok(sections.includes(String(touched[0])) || sections.includes('(top level)'), `the refusal names the changed section ${touched[0]}: ${e.problems.join(' | ')}`);
    }
    configOutcomes.refused++;
    return;
  }
  assert.ok(Object.isFrozen(c), 'an accepted configuration is frozen');
  configOutcomes.accepted++;
}

/**
 * Like session(), but first EHLO and STARTTLS in the clear, then the TLS handshake, then
 * the stream inside TLS. Returns the replies after the handshake until moat closes.
 * `injected`: bytes sent in the clear right behind STARTTLS (the STARTTLS injection trick).
 */
export async function tlsSession(port: number, from: string, stream: Buffer, ca: string, injected = ''): Promise<string[]> {
  const net = await import('node:net');
  const tls = await import('node:tls');
  const plain = net.connect({ port, host: '127.0.0.1', localAddress: from });
  plain.on('error', () => undefined);
  let buf = '';
  let closed = false;
  const onData = (d: Buffer) => (buf += d.toString('latin1'));
  plain.on('data', onData);
  plain.on('close', () => (closed = true));
  const reply = async (): Promise<string> => {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const m = /^(?:\d{3}-[^\r\n]*\r\n)*\d{3}(?: [^\r\n]*)?\r\n/.exec(buf);
      if (m) {
        buf = buf.slice(m[0].length);
        return m[0].trimEnd();
      }
      if (closed) throw Object.assign(new Error('closed'), { closed: true });
      if (Date.now() > deadline) throw new Error(`no reply within 15 s; buffer ${JSON.stringify(buf.slice(0, 200))}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  let sock: import('node:net').Socket = plain;
  try {
    await new Promise<void>((resolve, reject) => {
      plain.once('connect', resolve);
      plain.once('error', reject);
    });
    assert.match(await reply(), /^220 /);
    plain.write('EHLO fuzz.example.net\r\n');
    assert.match(await reply(), /^250-.*STARTTLS/s, 'STARTTLS is offered');
    plain.write('STARTTLS\r\n' + injected); // injected: pipelined after STARTTLS, in the clear
    assert.match(await reply(), /^220 /);
    plain.off('data', onData);
    const secure = tls.connect({ socket: plain, ca, servername: 'mx.example.com' });
    sock = secure;
    secure.on('error', () => undefined);
    secure.on('data', onData);
    secure.on('close', () => (closed = true));
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', resolve);
      secure.once('error', reject);
    });
    secure.write(stream);
    secure.write('\r\n.\r\nQUIT\r\n');
    const replies: string[] = [];
    for (;;) {
      try {
        replies.push(await reply());
      } catch (e) {
        if ((e as { closed?: boolean }).closed) return replies;
        throw e;
      }
      assert.ok(replies.length < 2000, 'a bounded number of replies');
    }
  } finally {
    sock.destroy();
    plain.destroy();
  }
}
