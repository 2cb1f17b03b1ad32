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
  send(data: string | Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      this.port.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data, (e) => (e ? reject(e) : this.port.drain(() => resolve())));
    });
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
  close(): Promise<void> {
    return new Promise((r) => (this.port.isOpen ? this.port.close(() => r()) : r()));
  }
}
