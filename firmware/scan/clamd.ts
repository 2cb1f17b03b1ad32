/*
 * scan/clamd.ts: ClamAV's daemon as a scan stage (clamd INSTREAM, over a unix
 * socket or TCP).
 *
 * The stage opens one connection per message at its first chunk and sends each
 * chunk on as it passes (a 4-byte length, then the chunk itself, by reference),
 * so clamd scans in parallel with the spool write; after the final dot it sends
 * the zero-length terminator and waits for "stream: OK" or "stream: NAME FOUND".
 * A full socket buffer slows the SMTP client through the chain's backpressure;
 * nothing queues in memory. Only the first scan.clamd.maxBytes of a message go
 * to clamd (keep it at or below clamd's StreamMaxLength); the rest is still
 * checked by moat's own stages.
 *
 * When clamd cannot be reached, fails, or does not answer within timeoutMs, the
 * verdict follows onFailure: 'tempfail' (451 4.7.1, the sender retries later;
 * the default) or 'accept' (logged). Must never: let a message through
 * unscanned under 'tempfail', keep a chunk after writing it, build a command
 * from message data. Built per message by scan/build.ts.
 */
import { connect, type Socket } from 'node:net';
import type { Stage, Verdict } from './pipeline.ts';

export type ClamdOptions = {
  /** A unix socket path (starting with /) or HOST:PORT. */
  address: string;
  timeoutMs: number;
  maxBytes: number;
  onFailure: 'tempfail' | 'accept';
};

export const clamdUnavailableText = '4.7.1 Virus scanner unavailable, try again later';
import { signatureFoundText as virusFoundText } from './signature-scan.ts';
export { virusFoundText };

const REPLY_MAX = 1024;
const COMMAND = Buffer.from('zINSTREAM\0');
const TERMINATOR = Buffer.alloc(4);

/** Parses a clamd address; null when it is neither an absolute path nor HOST:PORT. */
export function parseClamdAddress(s: string): { path: string } | { host: string; port: number } | null {
  if (s.startsWith('/')) return { path: s };
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(s);
  if (!m) return null;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return null;
  return { host: (m[1] ?? m[2])!, port };
}

/** Signature names as clamd prints them, cleaned for an SMTP reply and a log line. */
function cleanName(s: string): string {
  return s.replace(/[^\x21-\x7e]/g, '?').slice(0, 120);
}

export class ClamdStage implements Stage {
  readonly name = 'clamd';
  readonly #o: ClamdOptions;
  readonly #onFailureAccepted: (reason: string) => void;
  #sock: Socket | null = null;
  #sent = 0;
  #failure: string | null = null;
  #reply = '';
  #replied: (() => void) | null = null;
  #closed = false;
  #stallTimer: NodeJS.Timeout | null = null;

  /** onFailureAccepted is told why a message went through unscanned under onFailure 'accept'. */
  constructor(o: ClamdOptions, onFailureAccepted: (reason: string) => void = () => undefined) {
    this.#o = o;
    this.#onFailureAccepted = onFailureAccepted;
  }

  get verdict(): Verdict | null {
    return null; // clamd decides only after the end, in settle()
  }

  #open(): Socket | null {
    if (this.#sock || this.#failure) return this.#sock;
    const addr = parseClamdAddress(this.#o.address);
    if (!addr) {
      this.#failure = `bad clamd address ${JSON.stringify(this.#o.address)}`;
      return null;
    }
    const sock = 'path' in addr ? connect(addr.path) : connect(addr.port, addr.host);
    this.#sock = sock;
    sock.setNoDelay?.(true);
    sock.on('error', (e: Error) => this.#fail(`clamd: ${e.message}`));
    sock.on('close', () => {
      this.#closed = true;
      if (!this.#reply.includes('\0')) this.#fail('clamd closed the connection without a reply');
      this.#replied?.();
    });
    sock.on('data', (d: Buffer) => {
      if (this.#reply.length + d.length > REPLY_MAX) {
        this.#fail('clamd reply too long');
        return;
      }
      this.#reply += d.toString('latin1');
      if (this.#reply.includes('\0')) this.#replied?.();
    });
    sock.write(COMMAND);
    return sock;
  }

  #fail(reason: string): void {
    this.#failure ??= reason;
    this.#sock?.destroy();
    this.#replied?.();
  }

  push(chunk: Buffer): void {
    if (this.#sent >= this.#o.maxBytes) return;
    const sock = this.#open();
    if (!sock || this.#failure) return;
    const n = Math.min(chunk.length, this.#o.maxBytes - this.#sent);
    if (n === 0) return;
    const len = Buffer.allocUnsafe(4);
    len.writeUInt32BE(n, 0);
    sock.cork();
    sock.write(len);
    sock.write(n === chunk.length ? chunk : chunk.subarray(0, n));
    sock.uncork();
    this.#sent += n;
  }

  pressure(): Promise<void> | null {
    const sock = this.#sock;
    if (!sock || this.#failure || this.#closed || !sock.writableNeedDrain) return null;
    return new Promise((resolve) => {
      const done = (): void => {
        if (this.#stallTimer) clearTimeout(this.#stallTimer);
        this.#stallTimer = null;
        sock.off('drain', done);
        sock.off('close', done);
        resolve();
      };
      sock.once('drain', done);
      sock.once('close', done);
      this.#stallTimer = setTimeout(() => {
        this.#fail(`clamd did not read for ${this.#o.timeoutMs} ms`);
        done();
      }, this.#o.timeoutMs);
    });
  }

  end(): Verdict | null {
    return null;
  }

  async settle(): Promise<Verdict | null> {
    const sock = this.#open();
    if (sock && !this.#failure) sock.write(TERMINATOR);
    if (sock && !this.#failure && !this.#reply.includes('\0')) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          this.#fail(`clamd did not answer within ${this.#o.timeoutMs} ms`);
          resolve();
        }, this.#o.timeoutMs);
        this.#replied = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    this.#replied = null;
    this.#sock?.destroy();
    const answer = this.#reply.includes('\0') ? this.#reply.slice(0, this.#reply.indexOf('\0')) : null;
    if (answer !== null) {
      if (answer === 'stream: OK') return null;
      const found = /^stream: (.+) FOUND$/.exec(answer);
      if (found) {
        const name = cleanName(found[1]!);
        return { stage: this.name, code: 550, text: virusFoundText(name), reason: `clamd: ${name}` };
      }
    }
    const reason = answer !== null ? `clamd: ${cleanName(answer)}` : (this.#failure ?? 'clamd: no answer');
    if (this.#o.onFailure === 'accept') {
      this.#onFailureAccepted(reason);
      return null;
    }
    return { stage: this.name, code: 451, text: clamdUnavailableText, reason };
  }

  abort(): void {
    if (this.#stallTimer) clearTimeout(this.#stallTimer);
    this.#sock?.destroy();
  }
}
