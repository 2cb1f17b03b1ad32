/*
 * policy/recipients.ts: the recipient directory consulted at RCPT TO for local
 * domains: does this mailbox exist inside?
 *
 * Three modes, from configuration (inbound.recipients):
 *   any     every address in a local domain is accepted (the internal server
 *           decides later; costs backscatter risk, so not the default we advise);
 *   list    a static directory: full addresses (compared case-insensitively) and
 *           "*@domain" wildcards for a whole domain (exactly that domain: not its
 *           subdomains, not a domain that merely ends in the same letters). Built
 *           once into Sets; a lookup is O(1);
 *   verify  ask the internal servers, in the order given (already sorted by
 *           priority), with a probe (policy/rcpt-probe.ts) until one answers
 *           definitely (exists / unknown). Answers are cached (positive and
 *           negative TTLs, bounded size, oldest entry evicted first); concurrent
 *           checks of one address share one probe.
 *
 * Never: accepts on failure (only tempfail when no server answered definitely:
 * fail closed); caches a tempfail; throws from check(); reads configuration or
 * the clock from a global (both are passed in; the default clock is monotonic, as
 * a Pi without an RTC steps its wall clock at boot).
 *
 * Called by the RCPT stage of the inbound policy (firmware/smtp) after relay
 * control has established that the domain is local, with the address already
 * normalised (local@domain, domain lower case); clear() by the configuration
 * commit when the list or the internal servers change.
 */
import { probeRecipient, type ProbeTarget, type ProbeAnswer } from './rcpt-probe.ts';

export type RecipientsConfig = {
  mode: 'any' | 'list' | 'verify';
  list: string[];
  verify: { positiveTtlMs: number; negativeTtlMs: number; timeoutMs: number; maxCacheEntries: number };
};

export type RecipientCheck = {
  verdict: 'accept' | 'unknown' | 'tempfail';
  source: 'any' | 'list' | 'cache' | 'probe';
  /** For logs: which server said what, or why no answer. Never shown to the client verbatim. */
  detail?: string;
};

type CacheEntry = { verdict: 'accept' | 'unknown'; expires: number; detail: string };

/** Split at the last "@" (a quoted local part may contain one). Null when either side is empty. */
function splitAddress(address: string): { local: string; domain: string } | null {
  const at = address.lastIndexOf('@');
  if (at <= 0 || at === address.length - 1) return null;
  return { local: address.slice(0, at), domain: address.slice(at + 1) };
}

export class RecipientDirectory {
  readonly #mode: RecipientsConfig['mode'];
  readonly #verify: RecipientsConfig['verify'];
  readonly #servers: () => ProbeTarget[];
  readonly #heloName: string;
  readonly #now: () => number;
  readonly #probe: typeof probeRecipient;
  /** list mode: full addresses, lower case. */
  readonly #addresses = new Set<string>();
  /** list mode: domains of "*@domain" entries, lower case. */
  readonly #wildDomains = new Set<string>();
  /** verify mode: answers by address, in insertion order (oldest first). */
  readonly #cache = new Map<string, CacheEntry>();
  /** verify mode: probes under way, by address. */
  readonly #inflight = new Map<string, Promise<RecipientCheck>>();
  /** Bumped by clear(), so that a probe started before it does not fill the fresh cache. */
  #generation = 0;

  constructor(
    cfg: RecipientsConfig,
    servers: () => ProbeTarget[],
    opts: { heloName: string; now?: () => number; probe?: typeof probeRecipient },
  ) {
    if (cfg.mode !== 'any' && cfg.mode !== 'list' && cfg.mode !== 'verify')
      throw new TypeError(`recipients.mode: expected any, list or verify, got ${JSON.stringify(cfg.mode)}`);
    this.#mode = cfg.mode;
    this.#verify = { ...cfg.verify };
    this.#servers = servers;
    this.#heloName = opts.heloName;
    this.#now = opts.now ?? (() => performance.now());
    this.#probe = opts.probe ?? probeRecipient;
    if (cfg.mode === 'list') {
      for (const entry of cfg.list) {
        const parts = splitAddress(entry.toLowerCase());
        if (!parts) throw new TypeError(`recipients.list: expected user@domain or *@domain, got ${JSON.stringify(entry)}`);
        if (parts.local === '*') this.#wildDomains.add(parts.domain);
        else this.#addresses.add(`${parts.local}@${parts.domain}`);
      }
    }
  }

  /** Decide for one normalised address. Never rejects. */
  check(address: string): Promise<RecipientCheck> {
    switch (this.#mode) {
      case 'any':
        return Promise.resolve({ verdict: 'accept', source: 'any' });
      case 'list':
        return Promise.resolve({ verdict: this.#inList(address) ? 'accept' : 'unknown', source: 'list' });
      case 'verify':
        return this.#verified(address);
    }
  }

  /** Forget every cached answer (probes under way finish, but their answers are not cached). */
  clear(): void {
    this.#cache.clear();
    this.#generation++;
  }

  #inList(address: string): boolean {
    const parts = splitAddress(address.toLowerCase());
    if (!parts) return false;
    return this.#addresses.has(`${parts.local}@${parts.domain}`) || this.#wildDomains.has(parts.domain);
  }

  #verified(address: string): Promise<RecipientCheck> {
    const hit = this.#cache.get(address);
    if (hit) {
      if (this.#now() < hit.expires) return Promise.resolve({ verdict: hit.verdict, source: 'cache', detail: hit.detail });
      this.#cache.delete(address);
    }
    const pending = this.#inflight.get(address);
    if (pending) return pending;
    const generation = this.#generation;
    const p = this.#ask(address).then((answer) => {
      this.#inflight.delete(address);
      if (answer.verdict !== 'tempfail' && generation === this.#generation) this.#remember(address, answer);
      return answer;
    });
    this.#inflight.set(address, p);
    return p;
  }

  /** Ask each server in turn until one answers definitely. */
  async #ask(address: string): Promise<RecipientCheck> {
    const failures: string[] = [];
    let servers: ProbeTarget[];
    try {
      servers = this.#servers();
    } catch (err) {
      return { verdict: 'tempfail', source: 'probe', detail: `no server list: ${String(err)}` };
    }
    for (const target of servers) {
      let a: ProbeAnswer;
      try {
        a = await this.#probe(target, address, { heloName: this.#heloName, timeoutMs: this.#verify.timeoutMs });
      } catch (err) {
        // probeRecipient never throws; an injected probe might. Fail closed.
        failures.push(`${target.host}:${target.port}: probe threw: ${err instanceof Error ? err.message : String(err)}`);
        continue;
      }
      const said = `${a.server}: ${a.code} ${a.reply}`;
      if (a.verdict === 'exists') return { verdict: 'accept', source: 'probe', detail: said };
      if (a.verdict === 'unknown') return { verdict: 'unknown', source: 'probe', detail: said };
      failures.push(said);
    }
    return {
      verdict: 'tempfail',
      source: 'probe',
      detail: failures.length ? failures.join('; ') : 'no internal server configured',
    };
  }

  #remember(address: string, answer: RecipientCheck): void {
    const ttl = answer.verdict === 'accept' ? this.#verify.positiveTtlMs : this.#verify.negativeTtlMs;
    const max = this.#verify.maxCacheEntries;
    if (ttl <= 0 || max <= 0) return;
    while (this.#cache.size >= max) {
      const oldest = this.#cache.keys().next();
      if (oldest.done) break;
      this.#cache.delete(oldest.value);
    }
    this.#cache.set(address, {
      verdict: answer.verdict === 'accept' ? 'accept' : 'unknown',
      expires: this.#now() + ttl,
      detail: answer.detail ?? '',
    });
  }
}
