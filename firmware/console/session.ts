/*
 * console/session.ts: one serial console, from the login prompt to logout.
 *
 * Login (user admin; the password checked against admin.passwordHash, read
 * afresh from the configuration file at each attempt; the factory password
 * while there is no hash), a forced new password at the first login (committed
 * through moatd like any change, on a control connection of its own), lockout
 * with a growing delay, idle logout; then the shell: operational mode and
 * configuration mode (console/commands.ts), with paging of long output
 * (--More--: space a page, Enter a line, q stops).
 *
 * Input is processed byte by byte only while the console waits for a line or
 * a key; bytes that arrive while a command runs are queued (at most
 * MAX_PENDING bytes; more is noise and dropped), except Ctrl-C, which abandons
 * the command at once. Must never echo or log a password, never show the hash,
 * and never stop answering because of what arrives on the line.
 * Called by console/panel.ts (moat-panel) with the serial port as its terminal.
 */
import type { ControlClient } from '../control/client.ts';
import { ControlError } from '../control/client.ts';
import { LineEditor } from './line-editor.ts';
import { Lockout, hashPassword, passwordProblem, verifyPassword, type LockoutOptions } from './auth.ts';
import { complete, execute, help, UsageError, type CommandContext, type Mode } from './commands.ts';
import { PathError } from '../config/paths.ts';

export const MAX_PENDING = 4096;

export type ConsoleOptions = {
  /** Writes to the terminal. */
  write(s: string): void;
  hostname(): string;
  /** The administrator's settings from the running configuration file. */
  readAdmin(): Promise<{ passwordHash?: string; mustChangePassword: boolean }>;
  /** Opens a new control connection to moatd. */
  connect(): Promise<ControlClient>;
  idleTimeoutMs: number;
  pageLines: number;
  lockout?: LockoutOptions;
  reboot(): Promise<void>;
  now?: () => number;
};

class Aborted extends Error {}

type Waiter = { kind: 'line'; resolve: (s: string | null) => void } | { kind: 'key'; resolve: (b: number) => void };

export class Console {
  private readonly o: ConsoleOptions;
  private readonly editor: LineEditor;
  private readonly lockout: Lockout;
  private waiter: Waiter | null = null;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private abort: (() => void) | null = null;
  private loggedIn = false;
  private idle: NodeJS.Timeout | null = null;
  private client: ControlClient | null = null;
  private closed = false;
  private mode: Mode = 'operational';
  private logoutRequested = false;
  private queueIds: string[] = [];
  readonly done: Promise<void>;

  constructor(o: ConsoleOptions) {
    this.o = o;
    this.lockout = new Lockout(o.lockout, o.now);
    this.editor = new LineEditor({
      write: (s) => this.o.write(s),
      line: (t) => this.deliverLine(t),
      interrupt: () => this.deliverLine(null),
      complete: (before) => (this.loggedIn ? complete(this.ctx(), before) : { insert: '', choices: [] }),
      help: (before) => (this.loggedIn ? help(this.ctx(), before) : ['  type your user name and password']),
    });
    this.done = this.run();
  }

  /** Bytes from the terminal. */
  feed(data: Buffer): void {
    if (this.closed) return;
    if (this.loggedIn) this.touch();
    if (!this.waiter) {
      const cc = data.indexOf(3);
      if (cc >= 0 && this.abort) {
        this.pending = [];
        this.pendingBytes = 0;
        data = data.subarray(cc + 1);
        this.abort();
      }
      if (this.pendingBytes + data.length > MAX_PENDING) data = data.subarray(0, Math.max(0, MAX_PENDING - this.pendingBytes));
      if (data.length) {
        this.pending.push(Buffer.from(data));
        this.pendingBytes += data.length;
      }
      return;
    }
    this.process(data);
  }

  close(): void {
    this.closed = true;
    if (this.idle) clearTimeout(this.idle);
    this.client?.close();
    this.abort?.();
    if (this.waiter?.kind === 'line') this.waiter.resolve(null);
  }

  private process(data: Buffer): void {
    for (let i = 0; i < data.length; i++) {
      const w = this.waiter;
      if (!w) {
        const rest = data.subarray(i);
        this.pending.unshift(Buffer.from(rest));
        this.pendingBytes += rest.length;
        return;
      }
      if (w.kind === 'key') {
        this.waiter = null;
        w.resolve(data[i]!);
      } else this.editor.feed(data.subarray(i, i + 1));
    }
  }

  private deliverLine(t: string | null): void {
    const w = this.waiter;
    if (w?.kind !== 'line') return;
    this.waiter = null;
    w.resolve(t);
  }

  private drainPending(): void {
    // process() puts back what follows a finished line, in front, so the order is kept
    while (this.waiter && this.pending.length) {
      const b = this.pending.shift()!;
      this.pendingBytes -= b.length;
      this.process(b);
    }
  }

  private readLine(prompt: string, secret = false): Promise<string | null> {
    return new Promise((resolve) => {
      this.waiter = { kind: 'line', resolve };
      this.editor.start(prompt, secret);
      this.drainPending();
    });
  }

  private readKey(): Promise<number> {
    return new Promise((resolve) => {
      this.waiter = { kind: 'key', resolve };
      this.drainPending();
    });
  }

  private touch(): void {
    if (this.idle) clearTimeout(this.idle);
    this.idle = setTimeout(() => {
      if (!this.loggedIn) return;
      this.o.write('\r\n\r\nidle for too long: logged out\r\n');
      this.endShell();
      this.abort?.();
      if (this.waiter?.kind === 'line') this.deliverLine(null);
    }, this.o.idleTimeoutMs);
    this.idle.unref();
  }

  private write(lines: string[]): void {
    if (lines.length) this.o.write(lines.map((l) => l.replace(/[\r\n]+/g, ' ')).join('\r\n') + '\r\n');
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((r) => setTimeout(r, ms).unref());
  }

  private async run(): Promise<void> {
    while (!this.closed) {
      try {
        if (await this.login()) await this.shell();
      } catch (e) {
        if (this.closed) return;
        this.write([`console error: ${(e as Error).message}`]);
        await this.sleep(100);
      }
    }
  }

  // ------------------------------------------------------------------ login

  private async login(): Promise<boolean> {
    this.write(['', `moat ${this.o.hostname()} serial console`, '']);
    const user = await this.readLine('login: ');
    if (user === null || user.trim() === '' || this.closed) return false;
    const pw = await this.readLine('Password: ', true);
    if (pw === null || this.closed) return false;
    const locked = this.lockout.lockedFor();
    if (locked > 0) {
      this.write([`login locked after ${this.lockout.failureCount} failed attempts; try again in ${Math.ceil(locked / 1000)} s`]);
      return false;
    }
    let admin: { passwordHash?: string; mustChangePassword: boolean };
    try {
      admin = await this.o.readAdmin();
    } catch (e) {
      this.write([`cannot read the configuration: ${(e as Error).message}`]);
      return false;
    }
    const ok = user.trim() === 'admin' && (await verifyPassword(pw, admin.passwordHash));
    if (!ok) {
      const wait = this.lockout.fail();
      const lockedNow = this.lockout.lockedFor();
      this.write(['Login incorrect']);
      if (lockedNow > 0) this.write([`login locked for ${Math.ceil(lockedNow / 1000)} s after ${this.lockout.failureCount} failed attempts`]);
      if (wait) await this.sleep(wait);
      return false;
    }
    this.lockout.succeed();
    this.loggedIn = true;
    this.touch();
    if (admin.mustChangePassword || admin.passwordHash === undefined) {
      this.write(['You are using the factory password. Choose a new one (at least 8 characters).']);
      if (!(await this.changePassword())) {
        this.endShell();
        return false;
      }
    }
    return true;
  }

  private async changePassword(): Promise<boolean> {
    for (let i = 0; i < 3 && this.loggedIn; i++) {
      const a = await this.readLine('New password: ', true);
      if (a === null) return false;
      const problem = passwordProblem(a);
      if (problem) {
        this.write([problem]);
        continue;
      }
      const b = await this.readLine('Retype new password: ', true);
      if (b === null) return false;
      if (a !== b) {
        this.write(['the passwords differ']);
        continue;
      }
      const hash = await hashPassword(a);
      // a connection of its own, so that the shell's candidate is not committed with it
      let c: ControlClient | null = null;
      try {
        c = await this.o.connect();
        await c.request('config.set', { path: 'admin.passwordHash', value: hash });
        await c.request('config.set', { path: 'admin.mustChangePassword', value: false });
        const r = await c.request<{ revision: number }>('config.commit', { user: 'admin', comment: 'password changed' });
        this.write([`password changed (revision ${r.revision})`]);
        return true;
      } catch (e) {
        this.write([`cannot change the password: ${(e as Error).message}`]);
        return false;
      } finally {
        c?.close();
      }
    }
    return false;
  }

  private endShell(): void {
    this.loggedIn = false;
    this.mode = 'operational';
    if (this.idle) clearTimeout(this.idle);
    this.client?.close(); // the candidate goes with the connection
    this.client = null;
  }

  // ------------------------------------------------------------------ shell

  private ctx(): CommandContext {
    const self = this;
    return {
      mode: this.mode,
      setMode: (m) => (this.mode = m),
      user: 'admin',
      ctl: () => this.ctl(),
      out: (lines) => this.page(lines),
      confirm: async (q) => {
        const a = await this.readLine(`${q} [yes/no] `);
        return a !== null && /^y(es)?$/i.test(a.trim());
      },
      logout: () => {
        this.logoutRequested = true;
      },
      reboot: () => this.o.reboot(),
      get queueIds() {
        return self.queueIds;
      },
      set queueIds(v: string[]) {
        self.queueIds = v;
      },
    };
  }

  private async ctl(): Promise<ControlClient> {
    if (this.client && !this.client.closed) return this.client;
    this.client = await this.o.connect();
    return this.client;
  }

  private async shell(): Promise<void> {
    this.write(['', 'Type ? for help, Tab to complete.']);
    this.logoutRequested = false;
    while (this.loggedIn && !this.closed) {
      const host = this.o.hostname().split('.')[0];
      const prompt = this.mode === 'configure' ? `[edit]\r\nadmin@${host}# ` : `admin@${host}> `;
      const line = await this.readLine(prompt);
      if (!this.loggedIn || this.closed) break;
      if (line === null) continue; // Ctrl-C: a fresh line
      await this.runCommand(line);
      if (this.logoutRequested) {
        this.write(['logged out']);
        this.endShell();
      }
    }
  }

  private async runCommand(line: string): Promise<void> {
    const aborted = new Promise<never>((_, reject) => {
      this.abort = () => reject(new Aborted());
    });
    aborted.catch(() => undefined);
    // a Ctrl-C typed right after Enter, before the command started, abandons it too
    const typed = Buffer.concat(this.pending);
    const cc = typed.indexOf(3);
    if (cc >= 0) {
      this.pending = [typed.subarray(cc + 1)];
      this.pendingBytes = typed.length - cc - 1;
      this.abort!();
    }
    try {
      await Promise.race([execute(this.ctx(), line), aborted]);
    } catch (e) {
      if (e instanceof Aborted) this.write(['^C (abandoned)']);
      else if (e instanceof UsageError || e instanceof PathError) this.write([e.message]);
      else if (e instanceof ControlError) this.write([e.code === 'closed' || e.code === 'timeout' ? `moatd is not answering: ${e.message}` : `error: ${e.message}`]);
      else this.write([`error: ${(e as Error).message}`]);
    } finally {
      this.abort = null;
    }
  }

  /** Shows lines a page at a time. */
  private async page(lines: string[]): Promise<void> {
    const per = this.o.pageLines;
    let shown = 0;
    let budget = per > 0 ? per - 1 : Infinity;
    while (shown < lines.length) {
      const n = Math.min(budget, lines.length - shown);
      this.write(lines.slice(shown, shown + n));
      shown += n;
      if (shown >= lines.length) break;
      this.o.write('--More--');
      const k = await this.readKey();
      this.o.write('\r\x1b[K');
      if (k === 0x71 || k === 0x51 || k === 3) return; // q, Q, Ctrl-C
      budget = k === 13 || k === 10 ? 1 : per - 1;
    }
  }
}
