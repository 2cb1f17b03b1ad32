/*
 * queue/manager.ts: decides when each queued message is tried, and what
 * follows from each attempt.
 *
 * Fresh mail goes to a ready list and is tried at once; mail that could not be
 * delivered waits in a deferred heap ordered by its next attempt (exponential
 * back-off from queue.minRetryMs to queue.maxRetryMs), so a backlog of
 * deferred mail never delays fresh mail. At most queue.maxActive deliveries
 * to the internal servers run at once (outbound ones: below). When every
 * recipient has an answer, the message is done; if any recipient failed (a
 * 5xx, or its lifetime passed), an RFC 3464 DSN goes to the sender, except
 * for the null sender (no bounce of a bounce).
 *
 * Recipients outside the local domains (mail from internal networks, DSNs to
 * outside senders) go out by MX through delivery/outbound.ts; without it (a
 * manager built without `outbound`) they wait and expire like any
 * undeliverable mail. Such a message takes an outbound slot (at most
 * outbound.maxActive, apart from queue.maxActive, so the Internet cannot
 * starve internal delivery) and a slot at each destination domain
 * (outbound.perDomainConcurrency, queue/destinations.ts); it waits in that
 * domain's line while the domain is busy, and in the deferred heap while the
 * domain is closed after nobody there could be reached. Its retries follow
 * outbound.retry, and once (outbound.delayWarningAfterMs) its sender is told
 * by a "delayed" DSN that it is still waiting.
 *
 * The administrator may hold a message (it stays queued, is never tried, and
 * the hold is recorded in the spool's state log, so it survives a restart),
 * release it, or delete it (every open recipient marked failed, no DSN).
 * A new configuration (reconfigure) applies to attempts that start after it;
 * attempts in flight finish with the delivery they started with.
 *
 * Must never drop a message without a final answer for every recipient, and
 * never mark one done before that answer is recorded in the spool.
 * Called by moatd.ts (start, enqueue, flush, stop) and the control socket
 * (list, hold, release, delete, flush).
 */
import type { Config } from '../config/schema.ts';
import { buildDsn, type DsnRecipient } from '../delivery/dsn.ts';
import type { OutboundDelivery } from '../delivery/outbound.ts';
import { Destinations } from './destinations.ts';
import type { InternalDelivery, RcptOutcome } from '../delivery/internal.ts';
import type { Logger } from '../log/logger.ts';
import type { QueuedMessage, RcptStatus, Spool } from './spool.ts';

const HEADER_LIMIT = 64 * 1024;

export type ManagerDeps = {
  config: Config;
  spool: Spool;
  delivery: InternalDelivery;
  log: Logger;
  /** Delivery by MX for recipients outside the local domains; without it they wait. */
  outbound?: OutboundDelivery;
  now?: () => number;
};

export class QueueManager {
  private cfg: Config;
  private readonly spool: Spool;
  private delivery: InternalDelivery;
  private outbound: OutboundDelivery | null;
  private readonly log: Logger;
  private readonly now: () => number;
  private localDomains: Set<string>;
  private ready: QueuedMessage[] = [];
  /** Ready messages with recipients outside the local domains. */
  private readyOut: QueuedMessage[] = [];
  private outActive = 0;
  private readonly destinations: Destinations<QueuedMessage>;
  private deferred = new MinHeap<QueuedMessage>((a, b) => a.nextAttemptAt - b.nextAttemptAt);
  private inFlight = new Set<string>();
  private activeRuns = new Set<Promise<void>>();
  private timer: NodeJS.Timeout | null = null;
  private timerAt = Infinity;
  private stopped = false;

  constructor(d: ManagerDeps) {
    this.cfg = d.config;
    this.spool = d.spool;
    this.delivery = d.delivery;
    this.outbound = d.outbound ?? null;
    this.log = d.log;
    this.now = d.now ?? Date.now;
    this.localDomains = new Set(d.config.inbound.localDomains);
    this.destinations = new Destinations(this.destinationOptions(d.config));
  }

  private destinationOptions(c: Config) {
    const r = c.outbound.retry;
    return { perDestination: c.outbound.perDomainConcurrency, minMs: r.minMs, factor: r.factor, maxMs: r.maxMs, now: this.now };
  }

  /** The outbound destinations of a message's open recipients (none when it has none, or no outbound). */
  private destinationsOf(m: QueuedMessage): string[] {
    const out = this.outbound;
    if (!out) return [];
    const set = new Set<string>();
    m.rcpts.forEach((r, i) => {
      if (r.status !== 'pending') return;
      const d = domainOf(m.envelope.to[i]!);
      if (!this.localDomains.has(d)) set.add(out.destinationOf(d));
    });
    return [...set];
  }

  /** Puts a message in the ready list of its direction. */
  private schedule(m: QueuedMessage): void {
    if (this.destinationsOf(m).length) this.readyOut.push(m);
    else this.ready.push(m);
  }

  /** Schedules everything the spool recovered. */
  start(): void {
    const t = this.now();
    for (const m of this.spool.messages.values()) {
      if (m.held) continue;
      if (m.nextAttemptAt <= t) this.schedule(m);
      else this.deferred.push(m);
    }
    this.pump();
  }

  enqueue(m: QueuedMessage): void {
    if (this.stopped) return;
    this.schedule(m);
    this.pump();
  }

  /** Tries every deferred message now (the console's "queue flush"). */
  flush(): void {
    for (const m of this.destinations.reopen()) this.schedule(m);
    while (this.deferred.size) this.schedule(this.deferred.pop()!);
    this.pump();
  }

  stats(): { ready: number; deferred: number; active: number; held: number } {
    let held = 0;
    for (const m of this.spool.messages.values()) if (m.held) held++;
    return { ready: this.ready.length + this.readyOut.length, deferred: this.deferred.size, active: this.inFlight.size, held };
  }

  /** Queued messages, oldest first, at most `limit`. */
  list(limit: number): { total: number; messages: QueueEntry[] } {
    const out: QueueEntry[] = [];
    for (const m of this.spool.messages.values()) {
      if (out.length >= limit) break;
      out.push({
        id: m.id,
        from: m.envelope.from,
        to: m.envelope.to.filter((_, i) => m.rcpts[i]?.status === 'pending'),
        size: m.size,
        arrivedAt: new Date(m.envelope.arrivedAt).toISOString(),
        attempts: m.attempts,
        state: m.held ? 'held' : this.inFlight.has(m.id) ? 'active' : m.attempts > 0 ? 'deferred' : 'ready',
        ...(m.rcpts.find((r) => r.status === 'pending')?.reply ? { lastReply: m.rcpts.find((r) => r.status === 'pending')!.reply! } : {}),
      });
    }
    return { total: this.spool.messages.size, messages: out };
  }

  /** Holds a queued message: it is not tried until released. Recorded durably. */
  async hold(id: string): Promise<void> {
    const m = this.find(id);
    if (m.held) return;
    this.unlist(m);
    this.spool.update(m, { held: true });
    await this.spool.syncState();
    this.log.info({ ev: 'held', queueId: id }, 'message put on hold');
  }

  /** Releases a held message; it is tried at once. */
  async release(id: string): Promise<void> {
    const m = this.find(id);
    if (!m.held) throw new QueueAdminError('not-held', `message ${id} is not on hold`);
    this.spool.update(m, { held: false, next: this.now() });
    await this.spool.syncState();
    this.log.info({ ev: 'released', queueId: id }, 'message released from hold');
    if (!this.inFlight.has(id)) this.schedule(m);
    this.pump();
  }

  /** Deletes a queued message without delivering it (no DSN). Refused while it is being delivered. */
  async delete(id: string): Promise<void> {
    const m = this.find(id);
    if (this.inFlight.has(id)) throw new QueueAdminError('busy', `message ${id} is being delivered now; try again in a moment`);
    this.unlist(m);
    const changes: Array<[number, RcptStatus, string?]> = [];
    m.rcpts.forEach((r, i) => r.status === 'pending' && changes.push([i, 'failed', '5.0.0 Deleted from the queue by the administrator']));
    this.spool.update(m, { rcpts: changes });
    await this.spool.syncState();
    this.log.info({ ev: 'deleted', queueId: id, rcpts: changes.length }, 'message deleted from the queue');
  }

  /**
   * A new configuration: attempts that start from now on use `delivery` (and
   * `outbound`, when given); the old ones are closed once the attempts that use
   * them have finished. New outbound settings also end the wait of mail for the
   * Internet (paused domains, deferred messages with foreign recipients).
   */
  reconfigure(config: Config, delivery: InternalDelivery, outbound?: OutboundDelivery): void {
    const old = this.delivery;
    const running = [...this.activeRuns];
    this.cfg = config;
    this.delivery = delivery;
    const oldOut = this.outbound;
    const outboundChanged = Boolean(outbound && oldOut && outbound !== oldOut);
    if (outbound && outboundChanged) {
      this.outbound = outbound;
      void Promise.allSettled(running).then(() => oldOut!.close());
    }
    this.localDomains = new Set(config.inbound.localDomains);
    this.destinations.configure(this.destinationOptions(config));
    if (outboundChanged) {
      // mail waiting for the Internet is tried at once with the new settings, as after "queue flush"
      for (const m of this.destinations.reopen()) this.schedule(m);
      const waiting: QueuedMessage[] = [];
      this.deferred.remove((m) => this.destinationsOf(m).length > 0 && waiting.push(m) > 0);
      for (const m of waiting) this.schedule(m);
    }
    if (old !== delivery) void Promise.allSettled(running).then(() => old.close());
    this.pump();
  }

  private find(id: string): QueuedMessage {
    const m = this.spool.messages.get(id as QueuedMessage['id']);
    if (!m) throw new QueueAdminError('not-found', `no queued message ${id}`);
    return m;
  }

  private unlist(m: QueuedMessage): void {
    this.ready = this.ready.filter((x) => x !== m);
    this.readyOut = this.readyOut.filter((x) => x !== m);
    this.destinations.forget((x) => x === m);
    this.deferred.remove((x) => x === m);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await Promise.allSettled([...this.activeRuns]);
  }

  private pump(): void {
    if (this.stopped) return;
    this.pumpOutbound();
    let internalActive = this.inFlight.size - this.outActive;
    let moved = false;
    while (internalActive < this.cfg.queue.maxActive && this.ready.length) {
      const m = this.ready.shift()!;
      if (this.inFlight.has(m.id) || !this.spool.messages.has(m.id) || m.held) continue;
      if (this.destinationsOf(m).length) {
        this.readyOut.push(m); // its recipients changed direction (a new list of local domains)
        moved = true;
        continue;
      }
      internalActive++;
      this.run(m, []);
    }
    if (moved) this.pumpOutbound();
    this.arm();
  }

  private pumpOutbound(): void {
    while (this.outActive < this.cfg.outbound.maxActive && this.readyOut.length) {
      const m = this.readyOut.shift()!;
      if (this.inFlight.has(m.id) || !this.spool.messages.has(m.id) || m.held) continue;
      const dests = this.destinationsOf(m);
      if (!dests.length) {
        this.ready.push(m);
        continue;
      }
      const a = this.destinations.admit(dests);
      if (a.kind === 'full') {
        this.destinations.wait(a.destination, m);
        continue;
      }
      if (a.kind === 'down') {
        // the domain could not be reached a moment ago: wait with it (in memory only; not an attempt)
        m.nextAttemptAt = Math.max(m.nextAttemptAt, a.until);
        this.deferred.push(m);
        continue;
      }
      this.destinations.start(dests);
      this.outActive++;
      this.run(m, dests);
    }
  }

  private run(m: QueuedMessage, dests: string[]): void {
    this.inFlight.add(m.id);
    let unreachable: string[] = [];
    const run = this.attempt(m)
      .then((u) => {
        unreachable = u;
      })
      .catch((e: Error) => {
        this.log.error({ queueId: m.id, err: e.message }, 'queue: attempt failed unexpectedly; deferring');
        this.defer(m, []);
      })
      .finally(() => {
        this.inFlight.delete(m.id);
        this.activeRuns.delete(run);
        if (dests.length) {
          this.outActive--;
          this.readyOut.unshift(...this.destinations.finish(dests, unreachable));
        }
        this.pump();
      });
    this.activeRuns.add(run);
  }

  private arm(): void {
    const next = this.deferred.peek();
    if (!next || this.stopped) return;
    if (this.timer && this.timerAt <= next.nextAttemptAt) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = next.nextAttemptAt;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.timerAt = Infinity;
      const t = this.now();
      while (this.deferred.size && this.deferred.peek()!.nextAttemptAt <= t) this.schedule(this.deferred.pop()!);
      this.pump();
    }, Math.max(0, next.nextAttemptAt - this.now()));
    this.timer.unref();
  }

  /** One delivery attempt; returns the outbound destinations that could not be reached. */
  private async attempt(m: QueuedMessage): Promise<string[]> {
    const pending = m.rcpts.flatMap((r, i) => (r.status === 'pending' ? [i] : []));
    const local = pending.filter((i) => this.localDomains.has(domainOf(m.envelope.to[i]!)));
    const foreign = pending.filter((i) => !local.includes(i));
    const changes: Array<[number, RcptStatus, string?]> = [];
    let outcomes: RcptOutcome[] = [];
    let unreachable: string[] = [];
    const prefixBytes = m.envelope.headers ? Buffer.byteLength(m.envelope.headers, 'latin1') : 0;
    const job = (idx: number[]) => ({
      id: m.id,
      from: m.envelope.from,
      to: idx.map((i) => m.envelope.to[i]!),
      size: m.size + prefixBytes,
      prefixBytes,
      bodyType: m.envelope.bodyType,
      open: () => this.spool.reader(m),
    });
    if (local.length) {
      const delivery = this.delivery; // a new configuration applies to the next attempt
      outcomes = (await delivery.deliver(job(local))).outcomes;
    }
    const outbound = this.outbound; // a new configuration applies to the next attempt
    if (foreign.length && outbound) {
      const r = await outbound.deliver(job(foreign));
      outcomes = [...outcomes, ...r.outcomes];
      unreachable = r.unreachable;
    }
    const routed = this.outbound ? [...local, ...foreign] : local;
    routed.forEach((i, k) => {
      const o = outcomes[k]!;
      if (o.status === 'delivered') {
        changes.push([i, 'delivered']);
        this.log.info({ ev: 'delivered', queueId: m.id, rcpt: m.envelope.to[i], reply: o.reply }, 'delivered');
      } else if (o.status === 'failed') {
        changes.push([i, 'failed', o.reply]);
        this.log.info({ ev: 'bounced', queueId: m.id, rcpt: m.envelope.to[i], reply: o.reply }, 'bounced');
      } else {
        m.rcpts[i]!.reply = o.reply;
      }
    });
    if (!this.outbound) for (const i of foreign) m.rcpts[i]!.reply = '4.4.0 No route to this destination (outbound delivery is not configured)';
    const stillPending = pending.length - changes.length;
    if (stillPending === 0) {
      await this.finish(m, changes);
      return unreachable;
    }
    // deferred: expire, or wait (mail with recipients on the Internet on the outbound schedule)
    const waiting = pending.filter((i) => !changes.some(([j]) => j === i));
    const outward = this.outbound !== null && waiting.some((i) => foreign.includes(i));
    const lifetime = outward ? this.cfg.outbound.retry.lifetimeMs : this.cfg.queue.maxLifetimeMs;
    if (this.now() - m.envelope.arrivedAt >= lifetime) {
      for (const i of waiting) {
        const reply = `4.4.7 Message expired after ${Math.round(lifetime / 3_600_000)} hours in the queue; last reply: ${m.rcpts[i]!.reply ?? 'none'}`;
        changes.push([i, 'failed', reply]);
        this.log.info({ ev: 'bounced', queueId: m.id, rcpt: m.envelope.to[i], reply }, 'expired');
      }
      await this.finish(m, changes);
      return unreachable;
    }
    const warnAfter = this.cfg.outbound.delayWarningAfterMs;
    if (outward && warnAfter > 0 && !m.warned && m.envelope.from !== '' && this.now() - m.envelope.arrivedAt >= warnAfter) {
      try {
        await this.warnDelayed(m, waiting.filter((i) => foreign.includes(i)), lifetime);
      } catch (e) {
        this.log.error({ queueId: m.id, err: (e as Error).message }, 'queue: could not queue the delay warning; will try again');
      }
    }
    this.defer(m, changes, outward);
    return unreachable;
  }

  /** One RFC 3464 "delayed" DSN to the sender for the recipients still waiting; recorded so that it is never sent twice. */
  private async warnDelayed(m: QueuedMessage, idx: number[], lifetime: number): Promise<void> {
    const headers = await readHeaders(this.spool, m);
    const until = new Date(m.envelope.arrivedAt + lifetime);
    const recipients: DsnRecipient[] = idx.map((i) => {
      const reply = m.rcpts[i]!.reply ?? '';
      const code = /\b(4\.\d{1,3}\.\d{1,3})\b/.exec(reply)?.[1] ?? '4.0.0';
      return { address: m.envelope.to[i]!, action: 'delayed', status: code, diagnostic: reply, lastAttempt: new Date(this.now()), willRetryUntil: until };
    });
    const dsn = buildDsn({ reportingMta: this.cfg.hostname, queueId: m.id, sender: m.envelope.from, arrivalDate: new Date(m.envelope.arrivedAt), recipients, originalHeaders: headers });
    const d = await this.queueDsn(dsn, m.envelope.from);
    // recorded with the deferral that follows (one state record)
    m.warned = true;
    this.log.info({ ev: 'dsn', queueId: m.id, dsnId: d.id, to: m.envelope.from, delayed: recipients.length }, 'delay warning queued');
    this.enqueue(d);
  }

  private defer(m: QueuedMessage, changes: Array<[number, RcptStatus, string?]>, outward = false): void {
    const attempts = m.attempts + 1;
    const r = this.cfg.outbound.retry;
    const backoff = outward
      ? Math.min(r.maxMs, r.minMs * r.factor ** Math.min(attempts - 1, 60))
      : Math.min(this.cfg.queue.maxRetryMs, this.cfg.queue.minRetryMs * 2 ** Math.min(attempts - 1, 30));
    const next = this.now() + backoff;
    this.spool.update(m, { rcpts: changes, attempts, next, ...(m.warned ? { warned: true } : {}) });
    this.log.info({ ev: 'deferred', queueId: m.id, attempts, retryInMs: backoff, reply: m.rcpts.find((r) => r.status === 'pending')?.reply }, 'deferred');
    if (!this.stopped && !m.held) {
      this.deferred.push(m);
      this.arm();
    }
  }

  private async finish(m: QueuedMessage, changes: Array<[number, RcptStatus, string?]>): Promise<void> {
    // apply the answers to a copy first, to know who failed, but record them only after the DSN is safe
    const failed: DsnRecipient[] = [];
    m.rcpts.forEach((r, i) => {
      const c = changes.find(([j]) => j === i);
      const status = c ? c[1] : r.status;
      const reply = c ? c[2] : r.reply;
      if (status === 'failed') failed.push(dsnRecipient(m.envelope.to[i]!, reply ?? ''));
    });
    if (failed.length && m.envelope.from !== '') {
      try {
        await this.bounce(m, failed);
      } catch (e) {
        // keep what was delivered; the failed recipients stay pending, so the next attempt fails them again and retries the DSN
        this.log.error({ queueId: m.id, err: (e as Error).message }, 'queue: could not queue the DSN; will retry');
        return this.defer(m, changes.filter(([, status]) => status === 'delivered'));
      }
    }
    this.spool.update(m, { rcpts: changes });
  }

  private async bounce(m: QueuedMessage, failed: DsnRecipient[]): Promise<void> {
    const headers = await readHeaders(this.spool, m);
    const dsn = buildDsn({
      reportingMta: this.cfg.hostname,
      queueId: m.id,
      sender: m.envelope.from,
      arrivalDate: new Date(m.envelope.arrivedAt),
      recipients: failed,
      originalHeaders: headers,
    });
    const d = await this.queueDsn(dsn, m.envelope.from);
    this.log.info({ ev: 'dsn', queueId: m.id, dsnId: d.id, to: m.envelope.from, failed: failed.length }, 'delivery status notification queued');
    this.enqueue(d);
  }

  /** Spools a DSN from the null sender to `to`. */
  private async queueDsn(dsn: Buffer, to: string): Promise<QueuedMessage> {
    const inc = this.spool.begin();
    inc.write([dsn]);
    return inc.commit({
      from: '',
      to: [to],
      arrivedAt: this.now(),
      client: { address: '127.0.0.1', helo: this.cfg.hostname, tls: false },
      origin: 'local',
    });
  }
}

export type QueueEntry = {
  id: string;
  from: string;
  /** Recipients still waiting. */
  to: string[];
  size: number;
  arrivedAt: string;
  attempts: number;
  state: 'ready' | 'active' | 'deferred' | 'held';
  lastReply?: string;
};

export class QueueAdminError extends Error {
  readonly code: 'not-found' | 'not-held' | 'busy';
  constructor(code: QueueAdminError['code'], message: string) {
    super(message);
    this.name = 'QueueAdminError';
    this.code = code;
  }
}

function domainOf(addr: string): string {
  return addr.slice(addr.lastIndexOf('@') + 1).toLowerCase();
}

function dsnRecipient(address: string, reply: string): DsnRecipient {
  const m = /\b([245]\.\d{1,3}\.\d{1,3})\b/.exec(reply);
  const status = m?.[1]?.startsWith('5') ? m[1] : '5.0.0';
  return { address, action: 'failed', status: m && m[1]!.startsWith('4') ? '5.4.7' : status, diagnostic: reply, lastAttempt: new Date() };
}

/** The header block of a stored message (up to 64 KiB), for the DSN. */
async function readHeaders(spool: Spool, m: QueuedMessage): Promise<Buffer> {
  const parts: Buffer[] = [];
  let len = 0;
  for await (const chunk of spool.reader(m)) {
    parts.push(chunk as Buffer);
    len += (chunk as Buffer).length;
    const all = Buffer.concat(parts, len);
    const end = all.indexOf('\r\n\r\n');
    if (end >= 0) return all.subarray(0, end + 2);
    if (len >= HEADER_LIMIT) return all.subarray(0, HEADER_LIMIT);
  }
  return Buffer.concat(parts, len);
}

/** A binary heap; small and enough for the deferred queue. */
class MinHeap<T> {
  private a: T[] = [];
  private readonly cmp: (x: T, y: T) => number;
  constructor(cmp: (x: T, y: T) => number) {
    this.cmp = cmp;
  }
  get size(): number {
    return this.a.length;
  }
  peek(): T | undefined {
    return this.a[0];
  }
  /** Removes every element that matches (rebuilds the heap; for rare administrative changes). */
  remove(match: (v: T) => boolean): void {
    const keep = this.a.filter((v) => !match(v));
    if (keep.length === this.a.length) return;
    this.a = [];
    for (const v of keep) this.push(v);
  }
  push(v: T): void {
    const a = this.a;
    a.push(v);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (this.cmp(a[i]!, a[p]!) >= 0) break;
      [a[i], a[p]] = [a[p]!, a[i]!];
      i = p;
    }
  }
  pop(): T | undefined {
    const a = this.a;
    const top = a[0];
    const last = a.pop();
    if (a.length && last !== undefined) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && this.cmp(a[l]!, a[m]!) < 0) m = l;
        if (r < a.length && this.cmp(a[r]!, a[m]!) < 0) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m]!, a[i]!];
        i = m;
      }
    }
    return top;
  }
}
