/*
 * delivery/smtp-reply.ts: the strict SMTP reply parser and the checks on what
 * moat's SMTP clients put on the wire, shared by them.
 *
 * Replies are parsed strictly: lines end in CRLF (a bare CR or LF is an error),
 * every line starts with the same three-digit code, "ddd-" continues and "ddd "
 * (or a bare "ddd") ends a reply; a reply may have at most 64 lines of at most
 * 4 KiB each. The parser keeps only the unfinished line and the lines of the
 * unfinished reply across chunks.
 *
 * Never: accepts a reply line it cannot bound; lets server text reach a log or
 * a DSN with anything but printable ASCII in it (replyText, printable).
 *
 * Used by delivery/smtp-client.ts (delivery to the internal servers) and
 * policy/rcpt-probe.ts (recipient verification).
 */

/** Longest reply line we accept, excluding the CRLF (RFC 5321 allows 512 including it). */
export const MAX_REPLY_LINE = 4096;
/** Most lines we accept in one reply (an EHLO reply is the longest we expect). */
export const MAX_REPLY_LINES = 64;
/** Longest address we put on the wire (RFC 5321 §4.5.3.1.3: a path is at most 256 octets with its brackets). */
export const MAX_ADDRESS = 254;

export type SmtpReply = { code: number; lines: string[] };

/** A reply that broke the protocol. */
export class ReplyFormatError extends Error {
  override name = 'ReplyFormatError';
}

const CR = 0x0d;
const LF = 0x0a;
const LINE_RE = /^([2-5][0-5][0-9])(?:([ -])(.*))?$/s;

/**
 * Incremental, strict SMTP reply parser. push() takes any chunking of the byte
 * stream and returns the replies it completes; it throws ReplyFormatError on the
 * first violation and must not be used after that. Keeps only the unfinished line
 * and the lines of the unfinished reply across chunks.
 */
export class ReplyParser {
  #tail: Buffer | null = null;
  #code = 0;
  #lines: string[] = [];

  /** True while part of a reply (a line or earlier lines of a multi-line reply) is pending. */
  get busy(): boolean {
    return this.#tail !== null || this.#lines.length > 0;
  }

  push(chunk: Buffer): SmtpReply[] {
    const out: SmtpReply[] = [];
    let buf = this.#tail ? Buffer.concat([this.#tail, chunk]) : chunk;
    this.#tail = null;
    let start = 0;
    for (;;) {
      const lf = buf.indexOf(LF, start);
      if (lf === -1) break;
      if (lf === start || buf[lf - 1] !== CR) throw new ReplyFormatError('bare LF in reply');
      const line = buf.subarray(start, lf - 1);
      start = lf + 1;
      if (line.length > MAX_REPLY_LINE) throw new ReplyFormatError(`reply line longer than ${MAX_REPLY_LINE} bytes`);
      if (line.includes(CR)) throw new ReplyFormatError('bare CR in reply');
      const reply = this.#line(line.toString('latin1'));
      if (reply) out.push(reply);
    }
    if (start < buf.length) {
      const rest = buf.subarray(start);
      // The pending line may hold MAX_REPLY_LINE bytes plus the CR of its CRLF.
      const overlong =
        rest.length > MAX_REPLY_LINE + 1 || (rest.length === MAX_REPLY_LINE + 1 && rest[rest.length - 1] !== CR);
      if (overlong) throw new ReplyFormatError(`reply line longer than ${MAX_REPLY_LINE} bytes`);
      this.#tail = Buffer.from(rest); // copy: only the short unfinished line outlives the chunk
    }
    return out;
  }

  #line(text: string): SmtpReply | null {
    const m = LINE_RE.exec(text);
    if (!m) throw new ReplyFormatError(`malformed reply line: ${printable(text.slice(0, 80))}`);
    const code = Number(m[1]);
    if (this.#lines.length === 0) this.#code = code;
    else if (code !== this.#code) throw new ReplyFormatError(`reply code changed from ${this.#code} to ${code} within a reply`);
    this.#lines.push(m[3] ?? '');
    const more = m[2] === '-';
    if (more) {
      if (this.#lines.length >= MAX_REPLY_LINES) throw new ReplyFormatError(`reply longer than ${MAX_REPLY_LINES} lines`);
      return null;
    }
    const reply = { code: this.#code, lines: this.#lines };
    this.#lines = [];
    this.#code = 0;
    return reply;
  }
}

/** Replace anything but printable ASCII, so server text is safe in logs and on the console. */
export function printable(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, '?');
}

/** A reply as one line of printable ASCII: "550 5.1.1 no such user"; the lines of a multi-line reply joined by spaces. */
export function replyText(r: SmtpReply): string {
  const text = r.lines
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .join(' ');
  return printable(text ? `${r.code} ${text}` : String(r.code));
}

/** The characters we refuse in an address: controls, space, DEL, angle brackets, anything non-ASCII. */
const ADDRESS_FORBIDDEN = /[^\x21-\x7e]|[<>]/;
/** A HELO name: a hostname, or an address literal such as [192.0.2.1] or [IPv6:2001:db8::1]. */
const HELO_RE = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[(?:IPv6:[0-9A-Fa-f:.]+|[0-9.]+)\])$/;

/**
 * True when s may go between the angle brackets of MAIL FROM or RCPT TO: at most
 * MAX_ADDRESS printable ASCII characters without space, "<" or ">". The empty
 * string (the null sender) passes; callers that need an address check that.
 */
export function isWireAddress(s: unknown): s is string {
  return typeof s === 'string' && s.length <= MAX_ADDRESS && !ADDRESS_FORBIDDEN.test(s);
}

/** True when s may follow EHLO/HELO. */
export function isHeloName(s: unknown): s is string {
  return typeof s === 'string' && s.length <= 255 && HELO_RE.test(s);
}
