/*
 * delivery/smtp-client.ts: a strict SMTP client that delivers messages to one
 * server over one connection, reused for many messages (RSET between them).
 *
 *   connect → 220 → EHLO (HELO if EHLO is refused and TLS is not required) →
 *   [STARTTLS → TLS → EHLO] → { MAIL → RCPT… → DATA → body → "." → RSET }… → QUIT
 *
 * With PIPELINING, MAIL, every RCPT and DATA go out in one write, as RFC 2920
 * intends (DATA last in the group); every reply is then read and checked in
 * order. If no recipient was accepted and the server still answers 354 to DATA,
 * the client sends a lone "." (RFC 2920 §3.1), so no message is ever sent to
 * nobody. Without PIPELINING the commands go one at a time.
 *
 * The body is sent with SMTP transparency (DotStuffer): a line that starts with
 * "." gets a second "."; a bare LF or a bare CR becomes CRLF, so nothing the
 * server sees can read as an end of data (no smuggling); the data always ends
 * with CRLF before the final ".". It works on Buffer.indexOf and subarray views
 * of the chunks it is given, carrying two flags across chunk boundaries; it
 * never copies the body. Socket back-pressure is respected.
 *
 * Replies are parsed strictly (delivery/smtp-reply.ts). A reply that arrives
 * when no command is waiting for one (after the greeting, between commands,
 * during the body, or left over in plaintext before the TLS handshake) is a
 * protocol error. Every wait has a deadline: connectTimeoutMs for the TCP
 * connect and the greeting together, commandTimeoutMs for each reply, the TLS
 * handshake, each socket drain and each wait for the body stream. A timeout,
 * an unexpected close, a malformed reply or a failed body stream makes the
 * client unusable: the socket is destroyed and whatever is waiting rejects with
 * a SmtpClientError (code ECONNECTION, ETIMEDOUT, ETLS, EPROTOCOL, EBODY;
 * EENVELOPE for an address refused before anything was written; EAUTH when
 * AUTH failed or would have sent credentials in plaintext).
 *
 * Never: writes a command built from unchecked input (addresses and the HELO
 * name must be printable ASCII without space, "<" or ">"; nothing 8-bit goes
 * into a command); falls back to plaintext after STARTTLS was offered (only a
 * server that does not offer it gets plaintext under "opportunistic"); sends
 * the end of data after a body stream failed (a truncated message must not be
 * delivered); runs two commands at once (one caller at a time).
 *
 * Called by delivery/internal.ts (its connection pool) and delivery/outbound.ts.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { Readable } from 'node:stream';
import { ReplyParser, ReplyFormatError, replyText, isWireAddress, isHeloName, type SmtpReply } from './smtp-reply.ts';

export type ClientOptions = {
  host: string;
  port: number;
  heloName: string;
  /** none: never STARTTLS; opportunistic: STARTTLS when offered (and then it must work); required: fail unless offered and negotiated. */
  tls: 'none' | 'opportunistic' | 'required';
  /** PEM CA(s) to trust for the server's certificate, instead of the system store. */
  ca?: string;
  /** Verify the certificate chain and name. */
  rejectUnauthorized: boolean;
  /** Name to send as SNI and to verify the certificate against, when it differs from host. */
  servername?: string;
  /** Bounds the TCP connect and the greeting together. */
  connectTimeoutMs: number;
  /** Bounds each reply, the TLS handshake, each socket drain and each wait for the body. */
  commandTimeoutMs: number;
  /** Break body lines longer than 998 octets (RFC 5321 §4.5.3.1.6) with CRLF SPACE. */
  foldLongLines?: boolean;
  /**
   * Log in with AUTH PLAIN (or LOGIN when only that is offered) after EHLO
   * (and after STARTTLS). Credentials go only over TLS unless allowPlaintext.
   */
  auth?: { user: string; pass: string; allowPlaintext?: boolean };
};

/** What TLS a connection has: protocol, cipher, and whether the certificate chain and name verified. */
export type TlsInfo = { protocol: string; cipher: string; verified: boolean };

/** A reply: its code, and the whole reply as printable ASCII, e.g. "550 5.1.1 no such user". */
export type Reply = { code: number; text: string };

/**
 * The replies of one transaction. rcpts has one reply per recipient, in order,
 * unless MAIL was refused (then it is empty). data is the reply that ended the
 * data phase (to DATA when it was not 354, else to the final "."), or null when
 * MAIL was refused or no recipient was accepted.
 */
export type SendResult = { mail: Reply; rcpts: Reply[]; data: Reply | null };

export type Envelope = { from: string; to: string[]; size?: number; eightBit?: boolean };

export type ClientErrorCode = 'ECONNECTION' | 'ETIMEDOUT' | 'ETLS' | 'EPROTOCOL' | 'EBODY' | 'EENVELOPE' | 'EAUTH';

export class SmtpClientError extends Error {
  override name = 'SmtpClientError';
  readonly code: ClientErrorCode;
  /** The server's reply, when one caused the failure. */
  readonly reply: Reply | undefined;
  constructor(code: ClientErrorCode, message: string, reply?: Reply) {
    super(message);
    this.code = code;
    this.reply = reply;
  }
}

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;
const LF_BUF = Buffer.from('\n');
const CRLF_BUF = Buffer.from('\r\n');
const FOLD_BUF = Buffer.from('\r\n ');
/** RFC 5321 §4.5.3.1.6: a text line is at most 998 octets before its CRLF. */
const MAX_LINE_OCTETS = 998;
const END_AFTER_CR = Buffer.from('\n.\r\n');
const END_AT_LINE_START = Buffer.from('.\r\n');
const END_MID_LINE = Buffer.from('\r\n.\r\n');

/**
 * SMTP transparency for a message body (RFC 5321 §4.5.2), normalising line
 * ends on the way. push() returns the bytes to send for a chunk as views of it
 * (and of a few constant buffers); end() returns the end of data. A CRLF split
 * across chunks stays one CRLF. Not for use after end().
 */
export class DotStuffer {
  /** The last byte passed on was a CR whose LF (if any) is in the next chunk. */
  #cr = false;
  /** The next byte starts a line. */
  #bol = true;
  /** Octets of the current line passed on so far. */
  #len = 0;
  readonly #foldAt: number;

  /**
   * foldAt > 0 breaks lines longer than that many octets by inserting CRLF and
   * a space (as Postfix's smtp_line_length_limit does: a folded header stays
   * one header, MIME structure survives).
   */
  constructor(foldAt = 0) {
    this.#foldAt = foldAt;
  }

  push(c: Buffer): Buffer[] {
    const out: Buffer[] = [];
    const n = c.length;
    if (n === 0) return out;
    let seg = 0; // first byte not yet passed on
    let i = 0; // scan position
    if (this.#cr) {
      this.#cr = false;
      this.#bol = true;
      if (c[0] === LF) i = 1; // the CRLF was only split
      else out.push(LF_BUF); // a bare CR at the end of the last chunk
    }
    let cr = c.indexOf(CR, i);
    let lf = c.indexOf(LF, i);
    const fold = this.#foldAt;
    for (;;) {
      if (this.#bol) {
        this.#len = 0;
        if (i === n) break; // the next chunk starts a line
        this.#bol = false;
        if (c[i] === DOT) {
          // pass the dot on twice: this view ends with it, the next one starts with it
          out.push(c.subarray(seg, i + 1));
          seg = i;
        }
      }
      if (fold) {
        // break the line while the rest of it up to its end (or the chunk's) is too long
        const le = lf !== -1 && (cr === -1 || lf < cr) ? lf : cr !== -1 ? cr : n;
        while (this.#len + (le - i) > fold) {
          const cut = i + (fold - this.#len);
          if (cut > seg) out.push(c.subarray(seg, cut));
          out.push(FOLD_BUF);
          seg = i = cut;
          this.#len = 1; // the space
        }
      }
      if (lf !== -1 && (cr === -1 || lf < cr)) {
        // a bare LF: send CRLF instead
        if (lf > seg) out.push(c.subarray(seg, lf));
        out.push(CRLF_BUF);
        seg = i = lf + 1;
        this.#bol = true;
        lf = c.indexOf(LF, i);
        continue;
      }
      if (cr === -1) {
        this.#len += n - i;
        break;
      }
      if (cr + 1 === n) {
        this.#len += cr - i;
        this.#cr = true; // CRLF or bare CR: the next chunk (or end()) decides
        break;
      }
      if (c[cr + 1] === LF) {
        i = cr + 2;
        this.#bol = true;
        cr = c.indexOf(CR, i);
        lf = c.indexOf(LF, i);
        continue;
      }
      // a bare CR: add the LF
      out.push(c.subarray(seg, cr + 1), LF_BUF);
      seg = i = cr + 1;
      this.#bol = true;
      cr = c.indexOf(CR, i);
    }
    if (seg < n) out.push(seg === 0 ? c : c.subarray(seg));
    return out;
  }

  /** The end of data: completes the last line if needed, then ".\r\n". */
  end(): Buffer {
    const tail = this.#cr ? END_AFTER_CR : this.#bol ? END_AT_LINE_START : END_MID_LINE;
    this.#cr = false;
    this.#bol = true;
    this.#len = 0;
    return tail;
  }
}

function toReply(r: SmtpReply): Reply {
  return { code: r.code, text: replyText(r) };
}

const QUIT_TIMEOUT_MS = 5_000;

export class SmtpClient {
  readonly #o: ClientOptions;
  readonly #plain: net.Socket;
  #socket: net.Socket | tls.TLSSocket;
  #parser = new ReplyParser();
  /** Replies received and not yet read. */
  #replies: SmtpReply[] = [];
  /** Replies owed by the server: commands written and not yet answered (the greeting counts). */
  #owed = 0;
  #failure: SmtpClientError | null = null;
  #wake: (() => void) | null = null;
  #connected = false;
  #handshaking = false;
  #busy = false;
  #phase = 'connect';
  #secure = false;
  #extensions = new Set<string>();
  #authMechanisms = new Set<string>();
  #tlsInfo: TlsInfo | null = null;

  private constructor(o: ClientOptions) {
    this.#o = o;
    this.#owed = 1; // the greeting
    this.#plain = net.connect({ host: o.host, port: o.port });
    this.#plain.setNoDelay(true); // commands and the end of data are small writes that a reply waits for
    this.#socket = this.#plain;
    this.#plain.once('connect', () => {
      this.#connected = true;
      this.#notify();
    });
    this.#listen(this.#plain);
  }

  /** Connects, reads the greeting, says EHLO and negotiates STARTTLS as o.tls says. */
  static async connect(o: ClientOptions): Promise<SmtpClient> {
    if (!isHeloName(o.heloName)) throw new SmtpClientError('EPROTOCOL', 'refused to connect: invalid HELO name');
    if (!o.host || !Number.isInteger(o.port) || o.port < 1 || o.port > 65535) throw new SmtpClientError('ECONNECTION', 'refused to connect: invalid server address');
    const c = new SmtpClient(o);
    try {
      await c.#open();
      return c;
    } catch (e) {
      c.close();
      throw e;
    }
  }

  /** True once STARTTLS has been negotiated. */
  get secure(): boolean {
    return this.#secure;
  }

  /** Protocol, cipher and verification of the TLS session; null without TLS. */
  get tlsInfo(): TlsInfo | null {
    return this.#tlsInfo;
  }

  /** The EHLO keywords of the server (upper case); empty after HELO. */
  get extensions(): ReadonlySet<string> {
    return this.#extensions;
  }

  /** False once the connection failed or was closed: it must not be used again. */
  get usable(): boolean {
    return this.#failure === null;
  }

  /** Sends one message. The caller owns body (and destroys it); it is read to its end unless something fails. */
  async send(env: Envelope, body: Readable): Promise<SendResult> {
    this.#enter('MAIL');
    try {
      return await this.#send(env, body);
    } finally {
      this.#busy = false;
    }
  }

  /** RSET; rejects (and the client becomes unusable) unless the server answers 250. */
  async reset(): Promise<void> {
    this.#enter('RSET');
    try {
      const r = await this.#command('RSET', 'RSET\r\n');
      if (r.code !== 250) throw this.#fail(new SmtpClientError('EPROTOCOL', `RSET answered: ${replyText(r)}`, toReply(r)));
    } finally {
      this.#busy = false;
    }
  }

  /** QUIT, wait briefly for its reply, then close. Never throws. */
  async quit(): Promise<void> {
    if (this.#failure === null && !this.#busy) {
      this.#busy = true;
      try {
        this.#owed++;
        this.#phase = 'QUIT';
        this.#socket.write('QUIT\r\n');
        await this.#read('QUIT', Math.min(this.#o.commandTimeoutMs, QUIT_TIMEOUT_MS));
      } catch {
        // leaving anyway
      } finally {
        this.#busy = false;
      }
    }
    this.close();
  }

  /** Destroys the connection now; anything waiting rejects. */
  close(): void {
    this.#fail(new SmtpClientError('ECONNECTION', 'connection closed by client'));
  }

  // ---- the dialogue -----------------------------------------------------

  async #open(): Promise<void> {
    const o = this.#o;
    const deadline = Date.now() + o.connectTimeoutMs;
    await this.#until(() => (this.#connected ? true : undefined), o.connectTimeoutMs, 'connect');
    this.#phase = 'greeting';
    const greeting = await this.#read('the greeting', Math.max(1, deadline - Date.now()));
    if (greeting.code !== 220) throw this.#refused('greeting', greeting);
    let ehlo = await this.#command('EHLO', `EHLO ${o.heloName}\r\n`);
    if (ehlo.code === 250) this.#learn(ehlo);
    else if (ehlo.code >= 500 && o.tls !== 'required') {
      const helo = await this.#command('HELO', `HELO ${o.heloName}\r\n`);
      if (helo.code !== 250) throw this.#refused('HELO', helo);
    } else throw this.#refused('EHLO', ehlo);
    if (o.tls !== 'none') await this.#negotiateTls();
    if (o.auth) await this.#login(o.auth);
  }

  async #negotiateTls(): Promise<void> {
    const o = this.#o;
    if (!this.#extensions.has('STARTTLS')) {
      if (o.tls === 'required') throw this.#fail(new SmtpClientError('ETLS', `STARTTLS required but not offered`));
      return;
    }
    const st = await this.#command('STARTTLS', 'STARTTLS\r\n');
    if (st.code !== 220) throw this.#fail(new SmtpClientError('ETLS', `STARTTLS answered: ${replyText(st)}`, toReply(st)));
    if (this.#parser.busy || this.#replies.length) throw this.#fail(new SmtpClientError('EPROTOCOL', `data after the reply to STARTTLS`));
    await this.#startTls();
    const ehlo = await this.#command('EHLO after STARTTLS', `EHLO ${o.heloName}\r\n`);
    if (ehlo.code !== 250) throw this.#refused('EHLO after STARTTLS', ehlo);
    this.#learn(ehlo);
  }

  #learn(ehlo: SmtpReply): void {
    this.#extensions = parseExtensions(ehlo);
    this.#authMechanisms = new Set();
    for (const l of ehlo.lines.slice(1)) {
      const m = /^AUTH[ =](.*)$/i.exec(l.trim());
      if (m) for (const k of m[1]!.trim().split(/\s+/)) this.#authMechanisms.add(k.toUpperCase());
    }
  }

  /** AUTH PLAIN, or LOGIN; the credentials are never part of an error message. */
  async #login(a: NonNullable<ClientOptions['auth']>): Promise<void> {
    if (!this.#secure && !a.allowPlaintext) throw this.#fail(new SmtpClientError('EAUTH', 'refusing to send credentials without TLS'));
    if (!a.user || /[\0\r\n]/.test(a.user) || /[\0\r\n]/.test(a.pass)) throw this.#fail(new SmtpClientError('EAUTH', 'refusing to send credentials with NUL, CR or LF in them'));
    const b64 = (t: string) => Buffer.from(t, 'utf8').toString('base64');
    let r: SmtpReply;
    if (this.#authMechanisms.has('PLAIN')) {
      r = await this.#command('AUTH PLAIN', `AUTH PLAIN ${b64(`\0${a.user}\0${a.pass}`)}\r\n`);
    } else if (this.#authMechanisms.has('LOGIN')) {
      r = await this.#command('AUTH LOGIN', 'AUTH LOGIN\r\n');
      if (r.code === 334) r = await this.#command('AUTH LOGIN user name', `${b64(a.user)}\r\n`);
      if (r.code === 334) r = await this.#command('AUTH LOGIN password', `${b64(a.pass)}\r\n`);
    } else {
      throw this.#fail(new SmtpClientError('EAUTH', this.#authMechanisms.size ? `no AUTH mechanism in common (offered: ${[...this.#authMechanisms].join(' ')})` : 'the server offers no AUTH'));
    }
    if (r.code !== 235) throw this.#fail(new SmtpClientError('EAUTH', `AUTH answered: ${replyText(r)}`, toReply(r)));
  }

  async #startTls(): Promise<void> {
    const o = this.#o;
    this.#phase = 'TLS handshake';
    this.#handshaking = true;
    this.#plain.off('data', this.#onData);
    const opts: tls.ConnectionOptions = { socket: this.#plain, host: o.host, rejectUnauthorized: o.rejectUnauthorized };
    const servername = o.servername ?? (net.isIP(o.host) ? undefined : o.host);
    if (servername) opts.servername = servername;
    if (o.ca) opts.ca = o.ca;
    const secure = tls.connect(opts);
    this.#socket = secure;
    let done = false;
    secure.once('secureConnect', () => {
      done = true;
      this.#notify();
    });
    this.#listen(secure);
    await this.#until(() => (done ? true : undefined), o.commandTimeoutMs, 'the TLS handshake');
    this.#handshaking = false;
    this.#secure = true;
    const cert = secure.getPeerCertificate();
    const name = servername ?? o.host;
    const verified = secure.authorized && cert !== null && Object.keys(cert).length > 0 && tls.checkServerIdentity(name, cert) === undefined;
    this.#tlsInfo = { protocol: secure.getProtocol() ?? 'unknown', cipher: secure.getCipher()?.name ?? 'unknown', verified };
  }

  async #send(env: Envelope, body: Readable): Promise<SendResult> {
    const { from, to } = env;
    if (!isWireAddress(from)) throw new SmtpClientError('EENVELOPE', 'refused to send: invalid sender address');
    if (!Array.isArray(to) || to.length === 0) throw new SmtpClientError('EENVELOPE', 'refused to send: no recipients');
    for (const a of to) if (!isWireAddress(a) || a === '') throw new SmtpClientError('EENVELOPE', 'refused to send: invalid recipient address');
    let mailCmd = `MAIL FROM:<${from}>`;
    if (env.size !== undefined && this.#extensions.has('SIZE')) {
      if (!Number.isSafeInteger(env.size) || env.size < 0) throw new SmtpClientError('EENVELOPE', 'refused to send: invalid size');
      mailCmd += ` SIZE=${env.size}`;
    }
    if (env.eightBit && this.#extensions.has('8BITMIME')) mailCmd += ' BODY=8BITMIME';
    mailCmd += '\r\n';
    const rcptCmds = to.map((a) => `RCPT TO:<${a}>\r\n`);

    let mail: SmtpReply;
    const rcpts: SmtpReply[] = [];
    let data: SmtpReply | null = null;
    if (this.#extensions.has('PIPELINING')) {
      this.#phase = 'MAIL';
      this.#owed += rcptCmds.length + 2;
      this.#socket.write(mailCmd + rcptCmds.join('') + 'DATA\r\n');
      mail = await this.#read('MAIL');
      for (let k = 0; k < rcptCmds.length; k++) rcpts.push(await this.#read('RCPT'));
      data = await this.#read('DATA');
      const accepted = isOk(mail) && rcpts.some(isOk);
      if (!accepted) {
        if (data.code === 354) await this.#command('end of empty data', '.\r\n'); // RFC 2920 §3.1
        return { mail: toReply(mail), rcpts: isOk(mail) ? rcpts.map(toReply) : [], data: null };
      }
    } else {
      mail = await this.#command('MAIL', mailCmd);
      if (!isOk(mail)) return { mail: toReply(mail), rcpts: [], data: null };
      for (const cmd of rcptCmds) rcpts.push(await this.#command('RCPT', cmd));
      if (!rcpts.some(isOk)) return { mail: toReply(mail), rcpts: rcpts.map(toReply), data: null };
      data = await this.#command('DATA', 'DATA\r\n');
    }
    if (data.code === 354) {
      await this.#sendBody(body);
      data = await this.#read('end of data');
    }
    return { mail: toReply(mail), rcpts: rcpts.map(toReply), data: toReply(data) };
  }

  /** Streams body with transparency, then the end of data (one more reply owed). */
  async #sendBody(body: Readable): Promise<void> {
    this.#phase = 'message body';
    const enc = new DotStuffer(this.#o.foldLongLines ? MAX_LINE_OCTETS : 0);
    const ms = this.#o.commandTimeoutMs;
    let ended = false;
    let bodyError: Error | null = null;
    const onReadable = (): void => this.#notify();
    const onEnd = (): void => {
      ended = true;
      this.#notify();
    };
    const onError = (e: Error): void => {
      bodyError ??= e;
      this.#notify();
    };
    body.on('readable', onReadable);
    body.on('end', onEnd);
    body.on('error', onError);
    const broken = (): never => {
      const e = bodyError ?? (body.errored as Error | null) ?? new Error('stream destroyed before its end');
      throw this.#fail(new SmtpClientError('EBODY', `message body: ${e.message}`));
    };
    try {
      for (;;) {
        if (bodyError || body.errored) broken();
        const chunk: unknown = body.read();
        if (chunk !== null) {
          const buf = Buffer.isBuffer(chunk)
            ? chunk
            : chunk instanceof Uint8Array
              ? Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
              : Buffer.from(String(chunk), 'latin1');
          await this.#writeParts(enc.push(buf));
          continue;
        }
        if (ended || body.readableEnded) break;
        if (body.destroyed) broken();
        await this.#until(() => (bodyError || ended || body.destroyed || body.readableLength > 0 ? true : undefined), ms, 'the message body');
      }
      this.#phase = 'end of data';
      await this.#drained();
      this.#owed++; // only now: a reply that came during the body would be a protocol error
      this.#socket.write(enc.end());
    } finally {
      body.off('readable', onReadable);
      body.off('end', onEnd);
      body.off('error', onError);
    }
  }

  /** Writes the views as one batch, after waiting for the socket to drain if it asked for that. */
  async #writeParts(parts: Buffer[]): Promise<void> {
    await this.#drained();
    const s = this.#socket;
    if (parts.length === 1) {
      s.write(parts[0]!);
    } else if (parts.length > 1) {
      s.cork();
      for (const p of parts) s.write(p);
      s.uncork();
    }
  }

  /** Resolves when the socket takes more data without buffering past its high-water mark. */
  async #drained(): Promise<void> {
    const s = this.#socket;
    if (s.writableNeedDrain) await this.#until(() => (s.writableNeedDrain ? undefined : true), this.#o.commandTimeoutMs, 'the socket to drain');
    if (this.#failure) throw this.#failure;
  }

  // ---- plumbing -------------------------------------------------------------

  #enter(phase: string): void {
    if (this.#busy) throw new Error('SmtpClient: a command is already running');
    if (this.#failure) throw this.#failure;
    this.#busy = true;
    this.#phase = phase;
  }

  async #command(phase: string, line: string): Promise<SmtpReply> {
    if (this.#failure) throw this.#failure;
    this.#phase = phase;
    this.#owed++;
    this.#socket.write(line);
    return this.#read(phase);
  }

  #read(what: string, ms = this.#o.commandTimeoutMs): Promise<SmtpReply> {
    const r = this.#replies.shift();
    if (r) return Promise.resolve(r);
    return this.#until(() => this.#replies.shift(), ms, `the reply to ${what}`);
  }

  /** Fail the connection with a reply that refused a step of the connection set-up. */
  #refused(step: string, r: SmtpReply): SmtpClientError {
    return this.#fail(new SmtpClientError('EPROTOCOL', `${step} answered: ${replyText(r)}`, toReply(r)));
  }

  /**
   * Resolves with the first defined value of check(), re-evaluated on every
   * socket or body event; rejects with the failure, or after ms (which fails
   * the connection).
   */
  #until<T>(check: () => T | undefined, ms: number, what: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#fail(new SmtpClientError('ETIMEDOUT', `timeout after ${ms} ms waiting for ${what}`));
      }, ms);
      const step = (): void => {
        let v: T | undefined;
        try {
          if (this.#failure) throw this.#failure;
          v = check();
        } catch (e) {
          clearTimeout(timer);
          reject(e);
          return;
        }
        if (v === undefined) {
          this.#wake = step;
          return;
        }
        clearTimeout(timer);
        resolve(v);
      };
      step();
    });
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  /** Records the first failure, destroys the connection and wakes whoever waits. Returns the failure. */
  #fail(e: SmtpClientError): SmtpClientError {
    if (!this.#failure) {
      this.#failure = e;
      this.#socket.destroy();
      this.#plain.destroy();
    }
    this.#notify();
    return this.#failure;
  }

  #listen(s: net.Socket): void {
    s.on('data', this.#onData);
    s.on('error', this.#onError);
    s.on('close', this.#onClose);
    s.on('drain', this.#onDrain);
  }

  #onData = (chunk: Buffer): void => {
    if (this.#failure) return;
    let replies: SmtpReply[];
    try {
      replies = this.#parser.push(chunk);
    } catch (e) {
      const msg = e instanceof ReplyFormatError ? e.message : String(e);
      this.#fail(new SmtpClientError('EPROTOCOL', `${msg} (${this.#phase})`));
      return;
    }
    for (const r of replies) {
      if (this.#owed === 0) {
        this.#fail(new SmtpClientError('EPROTOCOL', `unexpected reply (${this.#phase}): ${replyText(r)}`, toReply(r)));
        return;
      }
      this.#owed--;
      this.#replies.push(r);
    }
    if (replies.length) this.#notify();
  };

  #onError = (e: Error): void => {
    this.#fail(new SmtpClientError(this.#handshaking ? 'ETLS' : 'ECONNECTION', `${this.#phase}: ${e.message}`));
  };

  #onClose = (): void => {
    this.#fail(new SmtpClientError(this.#handshaking ? 'ETLS' : 'ECONNECTION', `connection closed by server (${this.#phase})`));
  };

  #onDrain = (): void => {
    this.#notify();
  };
}

function isOk(r: SmtpReply): boolean {
  return r.code >= 200 && r.code < 300;
}

function parseExtensions(ehlo: SmtpReply): Set<string> {
  const out = new Set<string>();
  for (const l of ehlo.lines.slice(1)) {
    const k = l.trim().split(/\s+/, 1)[0]?.toUpperCase();
    if (k) out.add(k);
  }
  return out;
}
