/*
 * policy/rcpt-probe.ts: asks one internal SMTP server whether a recipient exists.
 *
 * A small, strict SMTP client that speaks one fixed dialogue and nothing else:
 *
 *   connect → 220 greeting → EHLO → [STARTTLS → TLS → EHLO] → MAIL FROM:<> →
 *   RCPT TO:<address> → RSET → QUIT
 *
 * The answer to RCPT decides: 2xx → exists, 5xx → unknown. Anything else (a 4xx
 * anywhere, a 5xx before RCPT, a refused or reset connection, a TLS failure, a
 * malformed or oversized reply, the overall deadline) → tempfail, so that the
 * caller fails closed. RSET and QUIT are courtesy: once RCPT has answered, their
 * failure does not change the verdict.
 *
 * Replies are parsed strictly by delivery/smtp-reply.ts (CRLF lines, one code
 * per reply, at most 64 lines of at most 4 KiB each). We never pipeline, so
 * bytes that arrive after a complete reply and before our next command are an
 * error too (this is what stops the STARTTLS command-injection trick of
 * answering for the TLS session in plaintext).
 *
 * Never: builds a command from an unchecked string (the address and the HELO
 * name are checked here once more, even though callers validate them); throws
 * (every failure becomes a tempfail answer); sends mail (no DATA, ever); leaves a
 * socket open or a timer running after it has answered.
 *
 * Called by policy/recipients.ts (RecipientDirectory, mode "verify") at RCPT time
 * for local domains, and by the console's diagnostics.
 */
import net from 'node:net';
import tls from 'node:tls';
import { ReplyParser, ReplyFormatError, printable, isWireAddress, isHeloName, type SmtpReply } from '../delivery/smtp-reply.ts';

export type ProbeTarget = {
  host: string;
  port: number;
  /** none: never STARTTLS; opportunistic (default): STARTTLS when offered; required: fail unless offered and negotiated. */
  tls?: 'none' | 'opportunistic' | 'required';
  /** PEM CA(s) to trust for the server's certificate, instead of the system store. */
  ca?: string;
  /** Verify the certificate chain and name. Defaults to true; the caller decides from configuration. */
  rejectUnauthorized?: boolean;
  /** Name to send as SNI and to verify the certificate against, when it differs from host. */
  servername?: string;
};

export type ProbeAnswer = {
  verdict: 'exists' | 'unknown' | 'tempfail';
  /** The SMTP code of the deciding reply; 0 when no reply decided (network error, timeout, malformed reply). */
  code: number;
  /** The deciding reply's text, or a description of the failure. Printable ASCII only, lines joined with "\n". */
  reply: string;
  /** host:port of the server asked, for logs. */
  server: string;
};

// The parser moved to delivery/smtp-reply.ts; re-exported for existing callers and tests.
export { ReplyParser, ReplyFormatError, MAX_REPLY_LINE, MAX_REPLY_LINES, type SmtpReply } from '../delivery/smtp-reply.ts';

/** A reply for the answer: each line with its code, printable ASCII, joined with "\n". */
function replyText(r: SmtpReply): string {
  return r.lines.map((l) => printable(`${r.code} ${l}`.trimEnd())).join('\n');
}

/** Ends the dialogue with a tempfail answer (a failed step, or a reply we cannot use). */
class Stop extends Error {
  code: number;
  constructor(code: number, reason: string) {
    super(reason);
    this.code = code;
  }
}

/**
 * One connection's state: the socket (plain, later TLS), the parser, the replies
 * not yet read, and the first failure seen. Events only record; read() reports.
 */
class Session {
  socket: net.Socket | tls.TLSSocket;
  readonly plain: net.Socket;
  parser = new ReplyParser();
  replies: SmtpReply[] = [];
  failure: string | null = null;
  phase = 'connect';
  #wake: (() => void) | null = null;

  constructor(plain: net.Socket) {
    this.plain = plain;
    this.socket = plain;
    plain.on('data', this.onData);
    plain.on('error', this.onError);
    plain.on('close', this.onClose);
  }

  onData = (chunk: Buffer): void => {
    if (this.failure) return;
    try {
      for (const r of this.parser.push(chunk)) this.replies.push(r);
    } catch (err) {
      this.fail(err instanceof ReplyFormatError ? `${err.message} (${this.phase})` : String(err));
      this.socket.destroy();
    }
    this.#notify();
  };

  onError = (err: Error): void => {
    this.fail(`${this.phase}: ${err.message}`);
  };

  onClose = (): void => {
    this.fail(`connection closed by server (${this.phase})`);
  };

  fail(reason: string): void {
    if (!this.failure) this.failure = reason;
    this.#notify();
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  #wait(): Promise<void> {
    return new Promise((resolve) => {
      this.#wake = resolve;
    });
  }

  /** Wait until the socket is connected (or failed). */
  async connected(): Promise<void> {
    let done = false;
    const onConnect = (): void => {
      done = true;
      this.#notify();
    };
    this.plain.once('connect', onConnect);
    try {
      while (!done) {
        if (this.failure) throw new Stop(0, this.failure);
        await this.#wait();
      }
    } finally {
      this.plain.off('connect', onConnect);
    }
  }

  /** The next complete reply. Data beyond it, before we have spoken again, is a protocol error. */
  async read(): Promise<SmtpReply> {
    for (;;) {
      const r = this.replies.shift();
      if (r) {
        if (this.replies.length > 0 || this.parser.busy) throw new Stop(0, `unexpected data after reply (${this.phase})`);
        return r;
      }
      if (this.failure) throw new Stop(0, this.failure);
      await this.#wait();
    }
  }

  async command(phase: string, line: string): Promise<SmtpReply> {
    this.phase = phase;
    if (this.failure) throw new Stop(0, this.failure);
    this.socket.write(`${line}\r\n`, 'latin1');
    return this.read();
  }

  /** Upgrade the connection after a 220 to STARTTLS; read() already checked that nothing was left over. */
  async startTls(target: ProbeTarget): Promise<void> {
    this.phase = 'TLS handshake';
    this.plain.off('data', this.onData);
    const opts: tls.ConnectionOptions = {
      socket: this.plain,
      host: target.host,
      rejectUnauthorized: target.rejectUnauthorized ?? true,
      minVersion: 'TLSv1.2',
    };
    const servername = target.servername ?? (net.isIP(target.host) ? undefined : target.host);
    if (servername) opts.servername = servername;
    if (target.ca) opts.ca = target.ca;
    const secure = tls.connect(opts);
    this.socket = secure;
    let done = false;
    secure.on('data', this.onData);
    secure.on('error', this.onError);
    secure.on('close', this.onClose);
    secure.once('secureConnect', () => {
      done = true;
      this.#notify();
    });
    while (!done) {
      if (this.failure) throw new Stop(0, this.failure);
      await this.#wait();
    }
  }

  destroy(): void {
    this.socket.destroy();
    this.plain.destroy();
  }
}

function serverLabel(t: ProbeTarget): string {
  return t.host.includes(':') ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`;
}

/** Require a reply of the given code, else stop with a tempfail carrying the server's code. */
function expect(r: SmtpReply, code: number, step: string): void {
  if (r.code !== code) throw new Stop(r.code, `${step} answered: ${replyText(r)}`);
}

function hasExtension(ehlo: SmtpReply, keyword: string): boolean {
  return ehlo.lines.slice(1).some((l) => l.trim().split(/\s+/, 1)[0]?.toUpperCase() === keyword);
}

/**
 * Ask target whether address exists. Resolves within about opts.timeoutMs (one
 * deadline for the whole dialogue, connect included); never rejects.
 */
export async function probeRecipient(
  target: ProbeTarget,
  address: string,
  opts: { heloName: string; timeoutMs: number },
): Promise<ProbeAnswer> {
  const server = serverLabel(target);
  const tempfail = (code: number, reply: string): ProbeAnswer => ({ verdict: 'tempfail', code, reply, server });

  if (!isWireAddress(address) || address.length === 0)
    return tempfail(0, 'refused to probe: address is empty, too long or contains forbidden characters');
  if (!isHeloName(opts.heloName))
    return tempfail(0, 'refused to probe: invalid HELO name');
  if (!Number.isInteger(target.port) || target.port < 1 || target.port > 65535 || !target.host)
    return tempfail(0, 'refused to probe: invalid server address');
  if (!Number.isFinite(opts.timeoutMs) || opts.timeoutMs <= 0) return tempfail(0, 'refused to probe: invalid timeout');

  let session: Session | null = null;
  let timer: NodeJS.Timeout | null = null;
  try {
    session = new Session(net.connect({ host: target.host, port: target.port }));
    const s = session;
    timer = setTimeout(() => {
      s.fail(`timeout after ${opts.timeoutMs} ms (${s.phase})`);
      s.destroy();
    }, opts.timeoutMs);

    let rcpt: SmtpReply;
    try {
      await s.connected();
      s.phase = 'greeting';
      const greeting = await s.read();
      expect(greeting, 220, 'greeting');
      let ehlo = await s.command('EHLO', `EHLO ${opts.heloName}`);
      expect(ehlo, 250, 'EHLO');
      const mode = target.tls ?? 'opportunistic';
      if (mode !== 'none' && hasExtension(ehlo, 'STARTTLS')) {
        expect(await s.command('STARTTLS', 'STARTTLS'), 220, 'STARTTLS');
        await s.startTls(target);
        ehlo = await s.command('EHLO after STARTTLS', `EHLO ${opts.heloName}`);
        expect(ehlo, 250, 'EHLO after STARTTLS');
      } else if (mode === 'required') {
        throw new Stop(0, 'STARTTLS required but not offered by server');
      }
      expect(await s.command('MAIL', 'MAIL FROM:<>'), 250, 'MAIL');
      rcpt = await s.command('RCPT', `RCPT TO:<${address}>`);
    } catch (err) {
      // A failed step with a sane connection: say goodbye, but do not wait long for it.
      if (err instanceof Stop && err.code !== 0) await quit(s);
      throw err;
    }

    const klass = Math.floor(rcpt.code / 100);
    const answer: ProbeAnswer =
      klass === 2
        ? { verdict: 'exists', code: rcpt.code, reply: replyText(rcpt), server }
        : klass === 5
          ? { verdict: 'unknown', code: rcpt.code, reply: replyText(rcpt), server }
          : tempfail(rcpt.code, `RCPT answered: ${replyText(rcpt)}`);
    try {
      await s.command('RSET', 'RSET');
    } catch {
      // The verdict stands; the connection is destroyed below.
    }
    await quit(s);
    return answer;
  } catch (err) {
    if (err instanceof Stop) return tempfail(err.code, err.message);
    return tempfail(0, `probe failed: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    if (timer) clearTimeout(timer);
    session?.destroy();
  }
}

/** Send QUIT and read its reply, ignoring every failure (bounded by the overall deadline). */
async function quit(s: Session): Promise<void> {
  try {
    await s.command('QUIT', 'QUIT');
  } catch {
    // Nothing to do: we are leaving anyway.
  }
}
