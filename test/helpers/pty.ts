// A real pseudo-terminal pair from socat (Debian's socat), and a terminal driven through one end with serialport.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { SerialPort } from 'serialport';

export type PtyPair = { a: string; b: string; close(): Promise<void> };

export async function ptyPair(dir: string): Promise<PtyPair> {
  const a = join(dir, 'tty-panel');
  const b = join(dir, 'tty-term');
  const child: ChildProcess = spawn('socat', ['-d', '-d', `pty,raw,echo=0,link=${a}`, `pty,raw,echo=0,link=${b}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  const exited = new Promise((r) => child.once('exit', r));
  for (let i = 0; i < 200 && !(existsSync(a) && existsSync(b)); i++) {
    if (child.exitCode !== null) throw new Error(`socat exited: ${err}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  if (!(existsSync(a) && existsSync(b))) throw new Error(`socat made no pseudo-terminals: ${err}`);
  return {
    a,
    b,
    async close() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** The far end of the console: what an admin's terminal would send and see. */
export class Terminal {
  out = '';
  private seen = 0;
  private waiters: Array<() => void> = [];
  readonly port: SerialPort;
  private constructor(port: SerialPort) {
    this.port = port;
    port.on('data', (d: Buffer) => {
      this.out += d.toString('latin1');
      for (const w of this.waiters.splice(0)) w();
    });
  }
  static async open(path: string, baudRate = 115200): Promise<Terminal> {
    const port = new SerialPort({ path, baudRate, autoOpen: false });
    await new Promise<void>((resolve, reject) => port.open((e) => (e ? reject(e) : resolve())));
    return new Terminal(port);
  }
  /**
   * Writes and waits until the bytes left, in pieces of 512 bytes, as a person or a paste would;
   * fails if the other end stops reading for 15 s. (serialport 13's poller stops polling for
   * input while a write waits for room, so one huge write could stall both directions of the
   * socat pair: see the note in console/panel.ts.)
   */
  async send(data: string | Buffer): Promise<void> {
    const all = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
    for (let at = 0; at < all.length; at += 512) {
      const piece = all.subarray(at, at + 512);
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`terminal: the console did not take ${all.length} bytes in 15 s (${at} taken); last output: ${JSON.stringify(this.unread.slice(-300))}`)), 15_000);
        this.port.write(piece, (e) => (e ? (clearTimeout(t), reject(e)) : this.port.drain(() => (clearTimeout(t), resolve()))));
      });
    }
  }
  /** Waits for output matching re after what earlier expects consumed; returns the match. */
  async expect(re: RegExp, timeoutMs = 15_000): Promise<RegExpExecArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const rest = this.out.slice(this.seen);
      const m = re.exec(rest);
      if (m) {
        this.seen += m.index + m[0].length;
        return m;
      }
      const left = deadline - Date.now();
      if (left <= 0 && process.env.MOAT_TEST_TTY_DUMP) (await import("node:fs")).writeFileSync(process.env.MOAT_TEST_TTY_DUMP, this.out);
      if (left <= 0) throw new Error(`terminal: no ${re} within ${timeoutMs} ms; last output: ${JSON.stringify(rest.slice(-600))}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }
  /** Output not yet consumed by expect. */
  get unread(): string {
    return this.out.slice(this.seen);
  }
  /** Closes the port; a write still pending is cancelled (its error is expected then, not a failure). */
  close(): Promise<void> {
    this.port.on('error', () => undefined);
    return new Promise((r) => {
      if (!this.port.isOpen) return r();
      try {
        this.port.close(() => r());
      } catch {
        r();
      }
    });
  }
}
