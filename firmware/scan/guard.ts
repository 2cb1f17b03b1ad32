/*
 * scan/guard.ts: the smuggling guard, first stage of the scan chain (STYLE 8).
 *
 * smtp-server ends DATA only at an exact CRLF.CRLF, but passes every other
 * "end of data" look-alike (\n.\n, \r.\n, \n.\r\n, \r\n.\n, \r.\r, \r\n.\r) to
 * onData unchanged; a next hop that is laxer could read one of them as the end
 * of the message and the bytes after it as a second, smuggled transaction. The
 * guard finds any bare CR or bare LF in the data, and any line over 998 octets
 * (RFC 5321 §4.5.3.1.6), and refuses the message (550 5.6.0) according to
 * inbound.data.bareLineEndings / longLines. With bareLineEndings 'normalise' it
 * lets bare CR/LF through: delivery/smtp-client.ts (DotStuffer) already turns
 * each into CRLF on the way to the internal server, so nothing is rewritten
 * twice. Long lines are rejected, or accepted as they are ('accept'), or
 * accepted and folded by the delivery client ('fold', DotStuffer).
 *
 * Finds line endings with String.prototype.indexOf on a transient latin1 view
 * of the chunk (one byte per character; about twice as fast as Buffer.indexOf,
 * whose every call crosses into C++; no per-byte JS loop); across chunk
 * boundaries it carries only "the last byte was a CR" and the length of the
 * unfinished line. Must never: keep or alter a chunk. Built by smtp/inbound.ts
 * for each message.
 */
import type { Stage, Verdict } from './pipeline.ts';

export type GuardOptions = {
  bareLineEndings: 'reject' | 'normalise';
  longLines: 'reject' | 'accept' | 'fold';
};

export const MAX_LINE = 998;
export const bareLineEndingsText = '5.6.0 Message contains bare CR or LF line endings (SMTP smuggling protection)';
export const longLineText = `5.6.0 Message has a line over ${MAX_LINE} octets`;

const CR = 13;
const LF = 10;

export class GuardStage implements Stage {
  readonly name = 'guard';
  readonly #bare: boolean;
  readonly #long: boolean;
  /** The last byte of the previous chunk was a CR. */
  #cr = false;
  /** Bytes of the unfinished line so far (a trailing CR included). */
  #line = 0;
  #verdict: Verdict | null = null;

  constructor(o: GuardOptions) {
    this.#bare = o.bareLineEndings === 'reject';
    this.#long = o.longLines === 'reject';
  }

  /** Whether this configuration checks anything at all (otherwise leave the stage out). */
  get active(): boolean {
    return this.#bare || this.#long;
  }

  get verdict(): Verdict | null {
    return this.#verdict;
  }

  push(c: Buffer): void {
    const n = c.length;
    if (n === 0 || this.#verdict) return;
    const s = c.toString('latin1');
    if (this.#bare) {
      // a CR must be followed by a LF, in this chunk or at the start of the next
      if (this.#cr && c[0] !== LF) return this.#refuseBare('bare CR');
      let j = s.indexOf('\r');
      while (j !== -1 && j + 1 < n) {
        if (c[j + 1] !== LF) return this.#refuseBare('bare CR');
        j = s.indexOf('\r', j + 2);
      }
    }
    let start = 0;
    let i = s.indexOf('\n');
    while (i !== -1) {
      const crlf = i > 0 ? c[i - 1] === CR : this.#cr;
      if (!crlf && this.#bare) return this.#refuseBare('bare LF');
      if (this.#long && this.#line + (i - start) - (crlf ? 1 : 0) > MAX_LINE) return this.#refuseLong();
      this.#line = 0;
      start = i + 1;
      i = s.indexOf('\n', start);
    }
    this.#cr = c[n - 1] === CR;
    this.#line += n - start;
    if (this.#long && this.#line - (this.#cr ? 1 : 0) > MAX_LINE) return this.#refuseLong();
  }

  end(): Verdict | null {
    if (!this.#verdict) {
      if (this.#bare && this.#cr) this.#refuseBare('bare CR');
      else if (this.#long && this.#line - (this.#cr ? 1 : 0) > MAX_LINE) this.#refuseLong();
    }
    return this.#verdict;
  }

  #refuseBare(reason: string): void {
    this.#verdict = { stage: this.name, code: 550, text: bareLineEndingsText, reason };
  }

  #refuseLong(): void {
    this.#verdict = { stage: this.name, code: 550, text: longLineText, reason: `line over ${MAX_LINE} octets` };
  }
}
