/*
 * queue/destinations.ts: the queue's view of each outbound destination (a
 * recipient domain, or the smart host): transactions running to it, and a
 * back-off after it could not be reached.
 *
 * A destination takes at most `perDestination` transactions at once; a message
 * that would exceed it waits in the destination's own line and is handed back
 * when a transaction to it ends. When no host of a destination could be
 * reached, it is closed for a while (minMs, times factor for each further
 * failure in a row, at most maxMs): the queue defers its other mail to then
 * instead of trying every message against a dead host. A delivery that
 * reaches a host opens it again.
 *
 * Must never: let one destination's state hold back another's mail, or keep a
 * waiting message without handing it back (every wait ends when a slot frees
 * or the destination is forgotten). Called by queue/manager.ts only.
 */
/** Destinations with state beyond which the expired back-offs are forgotten (their failure count with them). */
const MAX_TRACKED = 10_000;

export type DestinationOptions = { perDestination: number; minMs: number; factor: number; maxMs: number; now: () => number };

type State<T> = { active: number; fails: number; downUntil: number; waiting: T[] };

export type Admission = { kind: 'go' } | { kind: 'full'; destination: string } | { kind: 'down'; until: number };

export class Destinations<T> {
  #o: DestinationOptions;
  readonly #state = new Map<string, State<T>>();

  constructor(o: DestinationOptions) {
    this.#o = o;
  }

  /** New limits and back-off (a new configuration); states are kept. */
  configure(o: DestinationOptions): void {
    this.#o = o;
  }

  #get(d: string): State<T> {
    let s = this.#state.get(d);
    if (!s) this.#state.set(d, (s = { active: 0, fails: 0, downUntil: 0, waiting: [] }));
    return s;
  }

  /** Whether a message for these destinations may start now: go, wait for a slot at one, or wait until one opens. */
  admit(dests: readonly string[]): Admission {
    const t = this.#o.now();
    let until = 0;
    for (const d of dests) {
      const s = this.#state.get(d);
      if (s && s.downUntil > t) until = Math.max(until, s.downUntil);
    }
    if (until) return { kind: 'down', until };
    for (const d of dests) if ((this.#state.get(d)?.active ?? 0) >= this.#o.perDestination) return { kind: 'full', destination: d };
    return { kind: 'go' };
  }

  /** Takes a slot at each destination (after admit said go). */
  start(dests: readonly string[]): void {
    for (const d of dests) this.#get(d).active++;
  }

  /** Parks a message until a transaction to d ends. */
  wait(d: string, item: T): void {
    this.#get(d).waiting.push(item);
  }

  /**
   * Ends a transaction: records which destinations could not be reached, frees
   * the slots, and returns the messages that waited for them (in order).
   */
  finish(dests: readonly string[], unreachable: readonly string[]): T[] {
    const t = this.#o.now();
    const woken: T[] = [];
    for (const d of dests) {
      const s = this.#get(d);
      s.active = Math.max(0, s.active - 1);
      if (unreachable.includes(d)) {
        s.fails++;
        const o = this.#o;
        s.downUntil = t + Math.min(o.maxMs, o.minMs * o.factor ** Math.min(s.fails - 1, 60));
      } else {
        s.fails = 0;
        s.downUntil = 0;
      }
      // as many as there are free slots; all of them when it closed (they go to the deferred list)
      woken.push(...s.waiting.splice(0, s.downUntil ? s.waiting.length : Math.max(1, this.#o.perDestination - s.active)));
      if (s.active === 0 && s.fails === 0 && !s.waiting.length) this.#state.delete(d);
    }
    if (this.#state.size > MAX_TRACKED) this.#sweep(t);
    return woken;
  }

  /** Forgets closed destinations whose back-off has run out and that nobody uses or waits for. */
  #sweep(t: number): void {
    for (const [d, s] of this.#state) if (s.active === 0 && !s.waiting.length && s.downUntil <= t) this.#state.delete(d);
  }

  /** Destinations with state (running, waiting, or closed). */
  get size(): number {
    return this.#state.size;
  }

  /** When a closed destination opens again; 0 when it is open. */
  downUntil(d: string): number {
    return this.#state.get(d)?.downUntil ?? 0;
  }

  /** Opens every destination now (the administrator's "queue flush"); returns every waiting message. */
  reopen(): T[] {
    const woken: T[] = [];
    for (const [d, s] of this.#state) {
      s.fails = 0;
      s.downUntil = 0;
      woken.push(...s.waiting.splice(0));
      if (s.active === 0) this.#state.delete(d);
    }
    return woken;
  }

  /** Drops a message from every line (it was deleted or held). */
  forget(match: (item: T) => boolean): void {
    for (const s of this.#state.values()) s.waiting = s.waiting.filter((x) => !match(x));
  }
}
