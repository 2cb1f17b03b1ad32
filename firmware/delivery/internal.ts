/*
 * delivery/internal.ts: hands a queued message to the internal mail servers.
 *
 * Servers are tried by priority (lowest number first); among equal priorities
 * the order is drawn at random by weight, so load spreads as configured. A
 * server that cannot be reached, or whose greeting, EHLO or STARTTLS fails, is
 * left for the next one and skipped for 30 s (so a dead server does not cost
 * every message a connect timeout); a 4xx to the transaction or a connection
 * that breaks during it moves on to the next server too. Connections are kept
 * open and reused (RSET) between messages, a few per server, and closed after
 * 15 s idle; after close() nothing is reused. STARTTLS is none / opportunistic /
 * required per server, with optional certificate verification.
 *
 * The outcome is per recipient: delivered (accepted at RCPT and the server took
 * the message with a 2xx to the end of data), failed (a 5xx to its RCPT; or to
 * MAIL or the end of data, for everyone the transaction was for), deferred (a
 * 4xx to its RCPT, or no server took the message). Must never report delivered
 * before the server's reply to the end of data. Called by queue/manager.ts;
 * speaks SMTP through delivery/smtp-client.ts.
 */
import { readFileSync } from 'node:fs';
import { pipeline, type Readable } from 'node:stream';
import type { Config, InternalServer } from '../config/schema.ts';
import type { Logger } from '../log/logger.ts';
import { SmtpClient, SmtpClientError, type Reply, type SendResult } from './smtp-client.ts';
import { isWireAddress } from './smtp-reply.ts';
import { IdleConnections } from './idle-connections.ts';
import { forgedResultsOf, HeaderStripper, type FieldFilter } from './topology.ts';

export type RcptOutcome = { status: 'delivered' | 'failed' | 'deferred'; reply: string; enhanced?: string };
export type DeliveryResult = { server: string | null; outcomes: RcptOutcome[] };
export type DeliveryJob = {
  id: string;
  from: string;
  to: string[];
  size: number;
  bodyType?: '7BIT' | '8BITMIME';
  /** The message: header fields moat added (prefixBytes long), then the stored bytes. */
  open: () => Readable;
  prefixBytes?: number;
};

const DOWN_MS = 30_000;
const IDLE_MS = 15_000;

type PoolOptions = { hostname: string; max: number; connectTimeoutMs: number; commandTimeoutMs: number; foldLongLines: boolean };

class ServerPool {
  readonly server: InternalServer;
  readonly label: string;
  private readonly idle: IdleConnections;
  private busy = 0;
  private waiters: Array<() => void> = [];
  downUntil = 0;
  private readonly ca: string | undefined;
  private readonly opts: PoolOptions;

  constructor(server: InternalServer, opts: PoolOptions) {
    this.server = server;
    this.opts = opts;
    this.label = `${server.host}:${server.port}`;
    this.ca = server.caFile ? readFileSync(server.caFile, 'utf8') : undefined;
    this.idle = new IdleConnections({ idleMs: IDLE_MS, maxPerKey: opts.max, maxTotal: opts.max });
  }

  /** Waits for a connection slot, then hands out an idle connection or opens one. */
  async acquire(): Promise<SmtpClient> {
    while (this.busy >= this.opts.max) await new Promise<void>((r) => this.waiters.push(r));
    this.busy++;
    const reused = this.idle.take('');
    if (reused) return reused;
    try {
      return await this.open();
    } catch (e) {
      this.releaseSlot();
      throw e;
    }
  }

  private open(): Promise<SmtpClient> {
    const s = this.server;
    return SmtpClient.connect({
      host: s.host,
      port: s.port,
      heloName: this.opts.hostname,
      tls: s.tls,
      rejectUnauthorized: s.verifyCertificate,
      ...(this.ca ? { ca: this.ca } : {}),
      ...(s.servername ? { servername: s.servername } : {}),
      connectTimeoutMs: this.opts.connectTimeoutMs,
      commandTimeoutMs: this.opts.commandTimeoutMs,
      foldLongLines: this.opts.foldLongLines,
    });
  }

  /** Returns a healthy connection for reuse (after RSET), or closes it. */
  release(conn: SmtpClient, reusable: boolean): void {
    void this.idle.put('', conn, reusable).finally(() => this.releaseSlot());
  }

  private releaseSlot(): void {
    this.busy--;
    this.waiters.shift()?.();
  }

  close(): void {
    this.idle.close();
  }
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
  private readonly removeHeaders: readonly string[];
  private readonly forged: FieldFilter;

  constructor(config: Config, log: Logger, now: () => number = Date.now) {
    const i = config.internal;
    this.removeHeaders = i.removeHeaders;
    this.forged = forgedResultsOf(config.hostname);
    this.pools = i.servers.map(
      (s) =>
        new ServerPool(s, {
          hostname: config.hostname,
          max: i.maxConnectionsPerServer,
          connectTimeoutMs: i.connectTimeoutMs,
          commandTimeoutMs: i.commandTimeoutMs,
          foldLongLines: config.inbound.data.longLines === 'fold',
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
    // fields a sender could forge to fool the inside are left behind; moat's own pass (keepFirst)
    const stored = job.open;
    const strip = { keepFirst: job.prefixBytes ?? 0, drop: this.forged };
    job = { ...job, open: () => pipeline(stored(), new HeaderStripper(this.removeHeaders, strip), () => undefined) };
    // Addresses SMTP cannot carry never reach a server (the inbound edge refuses them already).
    if (!isWireAddress(job.from)) return { server: null, outcomes: job.to.map(() => ({ status: 'failed', reply: UNSENDABLE_SENDER })) };
    const sendable = job.to.flatMap((a, i) => (isWireAddress(a) && a !== '' ? [i] : []));
    if (sendable.length === job.to.length) return this.attempt(job);
    return this.attemptSome(job, sendable);
  }

  /** Delivers to the sendable recipients only; the others fail at once. */
  private async attemptSome(job: DeliveryJob, sendable: number[]): Promise<DeliveryResult> {
    const outcomes: RcptOutcome[] = job.to.map(() => ({ status: 'failed', reply: UNSENDABLE_RCPT }));
    if (!sendable.length) return { server: null, outcomes };
    const r = await this.attempt({ ...job, to: sendable.map((i) => job.to[i]!) });
    sendable.forEach((i, k) => (outcomes[i] = r.outcomes[k]!));
    return { server: r.server, outcomes };
  }

  private async attempt(job: DeliveryJob): Promise<DeliveryResult> {
    const order = orderServers(this.pools.map((p) => ({ p, priority: p.server.priority, weight: p.server.weight }))).map((x) => x.p);
    const t = this.now();
    const candidates = order.filter((p) => p.downUntil <= t);
    let lastReply = '4.4.1 No internal server reachable';
    for (const pool of candidates.length ? candidates : order) {
      let conn: SmtpClient;
      try {
        conn = await pool.acquire();
      } catch (e) {
        pool.downUntil = this.now() + DOWN_MS;
        lastReply = `4.4.1 ${pool.label}: ${(e as Error).message}`;
        this.log.warn({ ev: 'deliver-attempt', queueId: job.id, server: pool.label, err: (e as Error).message }, 'internal server unreachable');
        continue;
      }
      pool.downUntil = 0;
      const r = await sendTransaction(conn, job);
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

  close(): void {
    for (const p of this.pools) p.close();
  }
}

/** One transaction on an open connection, its replies turned into outcomes or "try the next server". */
export async function sendTransaction(conn: SmtpClient, job: DeliveryJob): Promise<Attempt> {
  const body = job.open();
  let res: SendResult;
  try {
    res = await conn.send({ from: job.from, to: job.to, size: job.size, eightBit: job.bodyType === '8BITMIME' }, body);
  } catch (e) {
    const err = e as SmtpClientError;
    if (err.code === 'EBODY') {
      // our own spool could not be read: another server would fare no better
      const reply = `4.3.0 ${err.message}`;
      return { kind: 'done', outcomes: job.to.map(() => ({ status: 'deferred', reply })), reply, reusable: false };
    }
    return { kind: 'next', reply: `4.4.2 ${err.message}`, reusable: false };
  } finally {
    body.destroy();
  }
  return settle(job, res);
}

export type Attempt = { kind: 'done'; outcomes: RcptOutcome[]; reply: string; reusable: boolean } | { kind: 'next'; reply: string; reusable: boolean };

const UNSENDABLE_SENDER = '5.1.7 Sender address cannot be sent over SMTP (control, space, angle bracket or non-ASCII character); not delivered';
const UNSENDABLE_RCPT = '5.1.3 Recipient address cannot be sent over SMTP (control, space, angle bracket or non-ASCII character); not delivered';

/** Turns the replies of one transaction into per-recipient outcomes, or into "try the next server". */
function settle(job: DeliveryJob, res: SendResult): Attempt {
  const { mail, rcpts, data } = res;
  if (!isClass(mail, 2)) {
    if (isClass(mail, 5)) return { kind: 'done', outcomes: job.to.map(() => ({ status: 'failed', reply: mail.text })), reply: mail.text, reusable: true };
    return { kind: 'next', reply: mail.text, reusable: isClass(mail, 4) };
  }
  if (data === null) {
    // no recipient accepted: each keeps its own verdict
    return { kind: 'done', outcomes: rcpts.map(rcptOutcome), reply: rcpts[0]?.text ?? mail.text, reusable: true };
  }
  if (isClass(data, 2) || isClass(data, 5)) {
    // the verdict on the message, for each recipient the server accepted
    const verdict: RcptOutcome['status'] = isClass(data, 2) ? 'delivered' : 'failed';
    const outcomes = rcpts.map((r) => (isClass(r, 2) ? { status: verdict, reply: data.text } : rcptOutcome(r)));
    return { kind: 'done', outcomes, reply: data.text, reusable: true };
  }
  // a 4xx to DATA or to the end of data: the next server may take it
  return { kind: 'next', reply: data.text, reusable: isClass(data, 4) };
}

function isClass(r: Reply, k: number): boolean {
  return Math.floor(r.code / 100) === k;
}

function rcptOutcome(r: Reply): RcptOutcome {
  return { status: isClass(r, 5) ? 'failed' : 'deferred', reply: r.text };
}
