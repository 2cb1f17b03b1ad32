/*
 * delivery/internal.ts: hands a queued message to the internal mail servers.
 *
 * Servers are tried by priority (lowest number first); among equal priorities
 * the order is drawn at random by weight, so load spreads as configured. A
 * server that refuses connections or answers 4xx to the transaction is left for
 * the next one, and a server that could not be reached is skipped for a short
 * while (so a dead server does not cost every message a connect timeout).
 * Connections are kept open and reused (RSET) between messages, a few per
 * server. STARTTLS is none / opportunistic / required per server, with
 * optional certificate verification.
 *
 * The outcome is per recipient: delivered (the server took the message),
 * failed (5xx: final), deferred (4xx or no server reachable). Must never report
 * delivered before the server's reply to the end of data. Called by
 * queue/manager.ts; uses nodemailer's SMTP client for the protocol.
 */
import { readFileSync } from 'node:fs';
import type { Readable } from 'node:stream';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import type { Config, InternalServer } from '../config/schema.ts';
import type { Logger } from '../log/logger.ts';

export type RcptOutcome = { status: 'delivered' | 'failed' | 'deferred'; reply: string; enhanced?: string };
export type DeliveryResult = { server: string | null; outcomes: RcptOutcome[] };
export type DeliveryJob = {
  id: string;
  from: string;
  to: string[];
  size: number;
  bodyType?: '7BIT' | '8BITMIME';
  open: () => Readable;
};

type Conn = InstanceType<typeof SMTPConnection>;
type SendError = Error & { code?: string; responseCode?: number; response?: string; rejectedErrors?: SendError[]; recipient?: string };

const DOWN_MS = 30_000;
const IDLE_MS = 15_000;

class ServerPool {
  readonly server: InternalServer;
  readonly label: string;
  private idle: Array<{ conn: Conn; timer: NodeJS.Timeout }> = [];
  private busy = 0;
  private waiters: Array<() => void> = [];
  downUntil = 0;
  private closed = false;
  private readonly ca: string | undefined;
  private readonly opts: { hostname: string; max: number; connectTimeoutMs: number; commandTimeoutMs: number };

  constructor(server: InternalServer, opts: { hostname: string; max: number; connectTimeoutMs: number; commandTimeoutMs: number }) {
    this.server = server;
    this.opts = opts;
    this.label = `${server.host}:${server.port}`;
    this.ca = server.caFile ? readFileSync(server.caFile, 'utf8') : undefined;
  }

  /** Waits for a connection slot, then hands out an idle connection or opens one. */
  async acquire(): Promise<Conn> {
    while (this.busy >= this.opts.max) await new Promise<void>((r) => this.waiters.push(r));
    this.busy++;
    while (this.idle.length) {
      const { conn, timer } = this.idle.pop()!;
      clearTimeout(timer);
      if (isUsable(conn)) return conn;
      conn.close();
    }
    try {
      return await this.open();
    } catch (e) {
      this.releaseSlot();
      throw e;
    }
  }

  private open(): Promise<Conn> {
    const s = this.server;
    const conn = new SMTPConnection({
      host: s.host,
      port: s.port,
      name: this.opts.hostname,
      secure: false,
      ignoreTLS: s.tls === 'none',
      requireTLS: s.tls === 'required',
      opportunisticTLS: s.tls === 'opportunistic',
      tls: {
        rejectUnauthorized: s.verifyCertificate,
        ...(this.ca ? { ca: this.ca } : {}),
        ...(s.servername ? { servername: s.servername } : {}),
      },
      connectionTimeout: this.opts.connectTimeoutMs,
      greetingTimeout: this.opts.connectTimeoutMs,
      socketTimeout: this.opts.commandTimeoutMs,
      allowInternalNetworkInterfaces: true,
      logger: false,
    });
    return new Promise((resolve, reject) => {
      let settled = false;
      conn.once('error', (e: Error) => {
        if (!settled) {
          settled = true;
          conn.close();
          reject(e);
        }
      });
      conn.connect(() => {
        settled = true;
        conn.on('error', () => undefined); // later errors surface through send()
        resolve(conn);
      });
    });
  }

  /** Returns a healthy connection for reuse, or closes it. */
  release(conn: Conn, reusable: boolean): void {
    if (reusable && isUsable(conn)) {
      conn.reset((err: Error | null) => {
        if (err) conn.close();
        else if (this.closed) conn.quit();
        else {
          const timer = setTimeout(() => {
            this.idle = this.idle.filter((i) => i.conn !== conn);
            conn.quit();
          }, IDLE_MS);
          timer.unref();
          this.idle.push({ conn, timer });
        }
        this.releaseSlot();
      });
    } else {
      conn.close();
      this.releaseSlot();
    }
  }

  private releaseSlot(): void {
    this.busy--;
    this.waiters.shift()?.();
  }

  close(): void {
    this.closed = true;
    for (const { conn, timer } of this.idle.splice(0)) {
      clearTimeout(timer);
      conn.quit();
    }
  }
}

function isUsable(conn: Conn): boolean {
  const c = conn as unknown as { _destroyed?: boolean; _closing?: boolean; stage?: string };
  return !c._destroyed && !c._closing;
}

/** Orders servers: by priority, and by weighted random draw within a priority. */
export function orderServers<T extends { priority: number; weight: number }>(servers: readonly T[], random: () => number = Math.random): T[] {
  const groups = new Map<number, T[]>();
  for (const s of servers) {
    const g = groups.get(s.priority);
    if (g) g.push(s);
    else groups.set(s.priority, [s]);
  }
  const out: T[] = [];
  for (const prio of [...groups.keys()].sort((a, b) => a - b)) {
    const left = groups.get(prio)!.slice();
    while (left.length) {
      const total = left.reduce((a, s) => a + s.weight, 0);
      let r = random() * total;
      let i = 0;
      while (i < left.length - 1 && r >= left[i]!.weight) r -= left[i++]!.weight;
      out.push(left.splice(i, 1)[0]!);
    }
  }
  return out;
}

export class InternalDelivery {
  private readonly pools: ServerPool[];
  private readonly log: Logger;
  private readonly now: () => number;

  constructor(config: Config, log: Logger, now: () => number = Date.now) {
    const i = config.internal;
    this.pools = i.servers.map(
      (s) =>
        new ServerPool(s, {
          hostname: config.hostname,
          max: i.maxConnectionsPerServer,
          connectTimeoutMs: i.connectTimeoutMs,
          commandTimeoutMs: i.commandTimeoutMs,
        }),
    );
    this.log = log;
    this.now = now;
  }

  /** True when at least one server is not marked unreachable. */
  anyServerUp(): boolean {
    const t = this.now();
    return this.pools.some((p) => p.downUntil <= t);
  }

  /** The earliest time a server marked unreachable may be tried again. */
  nextServerRetry(): number {
    return Math.min(...this.pools.map((p) => p.downUntil));
  }

  async deliver(job: DeliveryJob): Promise<DeliveryResult> {
    const order = orderServers(this.pools.map((p) => ({ p, priority: p.server.priority, weight: p.server.weight }))).map((x) => x.p);
    const t = this.now();
    const candidates = order.filter((p) => p.downUntil <= t);
    let lastReply = '4.4.1 No internal server reachable';
    for (const pool of candidates.length ? candidates : order) {
      let conn: Conn;
      try {
        conn = await pool.acquire();
      } catch (e) {
        pool.downUntil = this.now() + DOWN_MS;
        lastReply = `4.4.1 ${pool.label}: ${(e as Error).message}`;
        this.log.warn({ ev: 'deliver-attempt', queueId: job.id, server: pool.label, err: (e as Error).message }, 'internal server unreachable');
        continue;
      }
      pool.downUntil = 0;
      const r = await this.sendOn(conn, job);
      pool.release(conn, r.reusable);
      this.log.info(
        { ev: 'deliver-attempt', queueId: job.id, server: pool.label, reply: r.reply, outcome: r.kind },
        'delivery attempt',
      );
      if (r.kind === 'done') return { server: pool.label, outcomes: r.outcomes };
      lastReply = `${pool.label}: ${r.reply}`;
      // 'next': a 4xx for the whole transaction or a broken connection; try the next server
    }
    return { server: null, outcomes: job.to.map(() => ({ status: 'deferred', reply: lastReply })) };
  }

  private sendOn(conn: Conn, job: DeliveryJob): Promise<{ kind: 'done'; outcomes: RcptOutcome[]; reply: string; reusable: boolean } | { kind: 'next'; reply: string; reusable: boolean }> {
    return new Promise((resolve) => {
      const body = job.open();
      const envelope = { from: job.from, to: job.to, size: job.size, use8BitMime: job.bodyType === '8BITMIME' };
      conn.send(envelope, body, (err: SendError | null, info?: { response?: string; rejectedErrors?: SendError[] }) => {
        body.destroy();
        if (!err) {
          const rejected = new Map<string, SendError>();
          for (const r of info?.rejectedErrors ?? []) if (r.recipient) rejected.set(r.recipient, r);
          const outcomes = job.to.map((rcpt): RcptOutcome => {
            const rej = rejected.get(rcpt);
            if (!rej) return { status: 'delivered', reply: info?.response ?? '250' };
            return rcptOutcome(rej);
          });
          return resolve({ kind: 'done', outcomes, reply: info?.response ?? '250', reusable: true });
        }
        const reply = err.response ?? err.message;
        const code = err.responseCode ?? 0;
        if (err.code === 'EENVELOPE' && err.rejectedErrors?.length && !/^MAIL/i.test((err as { command?: string }).command ?? '')) {
          // every recipient refused at RCPT: each keeps its own verdict
          const byRcpt = new Map(err.rejectedErrors.map((r) => [r.recipient ?? '', r]));
          const outcomes = job.to.map((rcpt) => {
            const r = byRcpt.get(rcpt);
            return r ? rcptOutcome(r) : ({ status: 'deferred', reply } as RcptOutcome);
          });
          return resolve({ kind: 'done', outcomes, reply, reusable: true });
        }
        if (code >= 500 && code < 600) {
          // refused for the whole message (MAIL FROM or end of data): final
          return resolve({ kind: 'done', outcomes: job.to.map(() => ({ status: 'failed', reply })), reply, reusable: true });
        }
        resolve({ kind: 'next', reply: code ? reply : `4.4.2 ${reply}`, reusable: code >= 400 && code < 500 });
      });
    });
  }

  close(): void {
    for (const p of this.pools) p.close();
  }
}

function rcptOutcome(e: SendError): RcptOutcome {
  const code = e.responseCode ?? 0;
  const reply = e.response ?? e.message;
  return { status: code >= 500 && code < 600 ? 'failed' : 'deferred', reply };
}
