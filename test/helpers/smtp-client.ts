// A raw SMTP client for tests: sends exact lines and returns the exact replies,
// so that the test sees what a hostile client would.
import { connect, type Socket } from 'node:net';

export class RawSmtp {
  private buf = '';
  private waiters: Array<() => void> = [];
  closed = false;
  private readonly sock: Socket;
  private constructor(sock: Socket) {
    this.sock = sock;
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => {
      this.buf += d;
      this.wake();
    });
    sock.on('close', () => {
      this.closed = true;
      this.wake();
    });
    sock.on('error', () => undefined);
  }
  private wake() {
    for (const w of this.waiters.splice(0)) w();
  }
  /** localAddress: the source address (127.0.0.2, 127.0.0.3 … stand in for distinct clients). */
  static async open(port: number, host = '127.0.0.1', localAddress?: string): Promise<RawSmtp> {
    const sock = connect({ port, host, ...(localAddress ? { localAddress } : {}) });
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', resolve);
      sock.once('error', reject);
    });
    return new RawSmtp(sock);
  }
  /** Connects, reads the greeting and says EHLO: ready for MAIL. */
  static async greeted(port: number, helo = 'client.example.net'): Promise<RawSmtp> {
    const c = await RawSmtp.open(port);
    await c.reply();
    const r = await c.cmd(`EHLO ${helo}`);
    if (!r.startsWith('250')) throw new Error(`EHLO refused: ${r}`);
    return c;
  }
  /** Reads one complete (possibly multi-line) reply. */
  async reply(timeoutMs = 10_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = /^(?:\d{3}-[^\r\n]*\r\n)*\d{3}(?: [^\r\n]*)?\r\n/.exec(this.buf);
      if (m) {
        this.buf = this.buf.slice(m[0].length);
        return m[0].trimEnd();
      }
      if (this.closed) throw new Error(`connection closed; unread: ${JSON.stringify(this.buf)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no reply within ${timeoutMs} ms; buffer ${JSON.stringify(this.buf)}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }
  write(data: string | Buffer): void {
    this.sock.write(data);
  }
  async cmd(line: string): Promise<string> {
    this.write(line + '\r\n');
    return this.reply();
  }
  end(): void {
    this.sock.end();
  }
  destroy(): void {
    this.sock.destroy();
  }
}

/** A session that gives MAIL FROM and one RCPT TO: the reply to the RCPT, then it closes. */
export async function rcptReply(port: number, to: string): Promise<string> {
  const c = await RawSmtp.greeted(port);
  try {
    const mail = await c.cmd('MAIL FROM:<alice@sender.example>');
    if (!mail.startsWith('250')) throw new Error(`MAIL FROM refused: ${mail}`);
    return await c.cmd(`RCPT TO:<${to}>`);
  } finally {
    c.end();
  }
}
