/*
 * control/client.ts: a client of moatd's control socket (control/protocol.ts).
 *
 * One connection, requests numbered in order, each answered by the response
 * with its id; a response line over MAX_RESPONSE_BYTES or a closed socket
 * fails every request still waiting. Must never keep a request waiting
 * forever: each has a timeout. Called by moat-panel (console/), `moat ctl`
 * (control/ctl.ts) and tests.
 */
import net from 'node:net';
import { LineReader, MAX_RESPONSE_BYTES, PROTOCOL_VERSION, type ErrorCode, type Response } from './protocol.ts';

export class ControlError extends Error {
  readonly code: ErrorCode | 'closed' | 'timeout';
  constructor(code: ControlError['code'], message: string) {
    super(message);
    this.name = 'ControlError';
    this.code = code;
  }
}

export class ControlClient {
  private readonly sock: net.Socket;
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private closedWith: ControlError | null = null;
  readonly timeoutMs: number;

  private constructor(sock: net.Socket, timeoutMs: number) {
    this.sock = sock;
    this.timeoutMs = timeoutMs;
    const reader = new LineReader(
      MAX_RESPONSE_BYTES,
      (line) => this.onLine(line),
      () => this.fail(new ControlError('too-large', 'response from moatd too large')),
    );
    sock.on('data', (c: Buffer) => reader.push(c));
    sock.on('error', (e) => this.fail(new ControlError('closed', `control socket: ${e.message}`)));
    sock.on('close', () => this.fail(new ControlError('closed', 'moatd closed the control connection')));
  }

  static connect(path: string, timeoutMs = 30_000): Promise<ControlClient> {
    return new Promise((resolve, reject) => {
      const sock = net.connect(path);
      sock.once('connect', () => {
        sock.off('error', reject);
        resolve(new ControlClient(sock, timeoutMs));
      });
      sock.once('error', (e) => reject(new ControlError('closed', `cannot reach moatd at ${path}: ${e.message}`)));
    });
  }

  get closed(): boolean {
    return this.closedWith !== null;
  }

  /** Sends one command; resolves with its result or rejects with a ControlError. */
  request<T = unknown>(cmd: string, args: Record<string, unknown> = {}): Promise<T> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new ControlError('timeout', `moatd did not answer ${cmd} in ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      this.sock.write(JSON.stringify({ v: PROTOCOL_VERSION, id, cmd, args }) + '\n');
    });
  }

  close(): void {
    this.sock.end();
    this.fail(new ControlError('closed', 'control connection closed'));
  }

  private onLine(line: string): void {
    let res: Response;
    try {
      res = JSON.parse(line) as Response;
    } catch {
      return this.fail(new ControlError('bad-request', 'moatd sent something that is not JSON'));
    }
    const w = typeof res.id === 'number' ? this.waiting.get(res.id) : undefined;
    if (!w) {
      // an answer to no request (a refusal of the connection itself): fail everything
      if (!res.ok) this.fail(new ControlError(res.error.code, res.error.message));
      return;
    }
    this.waiting.delete(res.id as number);
    clearTimeout(w.timer);
    if (res.ok) w.resolve(res.result);
    else w.reject(new ControlError(res.error.code, res.error.message));
  }

  private fail(e: ControlError): void {
    if (!this.closedWith) this.closedWith = e;
    for (const [id, w] of this.waiting) {
      clearTimeout(w.timer);
      w.reject(e);
      this.waiting.delete(id);
    }
    if (!this.sock.destroyed && e.code !== 'closed') this.sock.destroy();
  }
}
