/*
 * policy/abuse-tracker.ts: what moat remembers about client addresses across
 * sessions: concurrent connections, counts in a time window (connections,
 * messages, unknown recipients, relay attempts), and temporary blocks.
 *
 * Everything is keyed by the client's address and bounded: at most
 * policy.connections.maxTracked addresses per table, the oldest forgotten first,
 * so an attacker with many addresses costs memory only up to that bound.
 * One tracker lives as long as moatd: a configuration commit hands it to the
 * new policy (policy/policy.ts) with the new windows and bound, so a commit
 * neither lifts a block nor resets a count. Memory only: a restart forgets
 * blocks (they are short by design).
 *
 * Must never: grow without bound; keep anything but counters and times.
 * Called by the checks in policy/checks/ and by policy/policy.ts.
 */

/** Fixed-window counter per key: the window starts with the key's first event. */
export class WindowCounter {
  #windowMs: number;
  #max: number;
  readonly #now: () => number;
  readonly #map = new Map<string, { start: number; count: number }>();

  constructor(windowMs: number, maxKeys: number, now: () => number) {
    this.#windowMs = windowMs;
    this.#max = maxKeys;
    this.#now = now;
  }

  /** Counts one event; returns the count in the current window, this one included. */
  hit(key: string): number {
    const now = this.#now();
    let e = this.#map.get(key);
    if (!e || now - e.start >= this.#windowMs) {
      if (e) this.#map.delete(key);
      e = { start: now, count: 0 };
      this.#map.set(key, e);
      trim(this.#map, this.#max);
    }
    return ++e.count;
  }

  /** The count in the current window, without counting. */
  count(key: string): number {
    const e = this.#map.get(key);
    if (!e || this.#now() - e.start >= this.#windowMs) return 0;
    return e.count;
  }

  reset(key: string): void {
    this.#map.delete(key);
  }

  /** New window and bound (a configuration commit); counts in progress are kept, the oldest dropped past the bound. */
  reconfigure(windowMs: number, maxKeys: number): void {
    this.#windowMs = windowMs;
    this.#max = maxKeys;
    trim(this.#map, maxKeys);
  }

  get size(): number {
    return this.#map.size;
  }
}

export type TrackerSettings = { rateWindowMs: number; harvestWindowMs: number; relayWindowMs: number; maxTracked: number };

/** Greylisting's memory of a (client network, sender, recipient) triplet (policy/checks/greylist.ts). */
export type GreylistEntry = { first: number; passedAt: number | null };

export class AbuseTracker {
  readonly #now: () => number;
  #max: number;
  readonly #open = new Map<string, number>();
  readonly #blocks = new Map<string, { until: number; reason: string }>();
  readonly connections: WindowCounter;
  readonly messages: WindowCounter;
  readonly unknownRecipients: WindowCounter;
  readonly relayAttempts: WindowCounter;
  /** Greylist triplets; bounded by the greylist check itself (policy.greylist.maxEntries). */
  readonly greylist = new Map<string, GreylistEntry>();

  constructor(o: TrackerSettings & { now?: () => number }) {
    this.#now = o.now ?? Date.now;
    this.#max = o.maxTracked;
    this.connections = new WindowCounter(o.rateWindowMs, o.maxTracked, this.#now);
    this.messages = new WindowCounter(o.rateWindowMs, o.maxTracked, this.#now);
    this.unknownRecipients = new WindowCounter(o.harvestWindowMs, o.maxTracked, this.#now);
    this.relayAttempts = new WindowCounter(o.relayWindowMs, o.maxTracked, this.#now);
  }

  /** The windows and bound of a new configuration; blocks, open connections and counts are kept. */
  reconfigure(o: TrackerSettings): void {
    this.#max = o.maxTracked;
    this.connections.reconfigure(o.rateWindowMs, o.maxTracked);
    this.messages.reconfigure(o.rateWindowMs, o.maxTracked);
    this.unknownRecipients.reconfigure(o.harvestWindowMs, o.maxTracked);
    this.relayAttempts.reconfigure(o.relayWindowMs, o.maxTracked);
    trim(this.#blocks, o.maxTracked);
  }

  /** A connection was accepted: counts it (concurrent and rate); returns the release function. */
  opened(ip: string): () => void {
    this.#open.set(ip, (this.#open.get(ip) ?? 0) + 1);
    this.connections.hit(ip);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const n = (this.#open.get(ip) ?? 1) - 1;
      if (n <= 0) this.#open.delete(ip);
      else this.#open.set(ip, n);
    };
  }

  /** Connections from ip open right now. */
  concurrent(ip: string): number {
    return this.#open.get(ip) ?? 0;
  }

  block(ip: string, ms: number, reason: string): void {
    if (ms <= 0) return;
    this.#blocks.delete(ip);
    this.#blocks.set(ip, { until: this.#now() + ms, reason });
    trim(this.#blocks, this.#max);
  }

  /** The reason ip is blocked, or null. */
  blocked(ip: string): string | null {
    const b = this.#blocks.get(ip);
    if (!b) return null;
    if (b.until <= this.#now()) {
      this.#blocks.delete(ip);
      return null;
    }
    return b.reason;
  }
}

function trim(map: Map<string, unknown>, max: number): void {
  while (map.size > max) map.delete(map.keys().next().value as string);
}
