/*
 * dns/resolver.ts: the one DNS resolver of moatd, with a cache.
 *
 * Every DNS lookup moat makes (DNS blocklists, SPF, DKIM keys, DMARC records,
 * later the MX lookups of outbound delivery) goes through here, to the servers
 * named in the `dns` settings (or the system's, when none are named). Answers
 * are cached: A and AAAA for their own TTL (capped by dns.maxTtlMs), other
 * types for dns.maxTtlMs (the stub resolver does not report their TTL), and
 * "no such name / no such record" for dns.negativeTtlMs. Concurrent lookups of
 * the same name share one query. A lookup that takes longer than
 * dns.timeoutMs fails with code ETIMEOUT; failures other than "no such name"
 * are not cached.
 *
 * The interface is that of dns.promises.resolve(name, type), which is what
 * mailauth's `resolver` option expects: errors carry `code` (ENOTFOUND,
 * ENODATA, ETIMEOUT, ESERVFAIL …).
 *
 * Must never: grow without bound (the cache holds at most dns.cacheEntries
 * answers, dropping the oldest), let a slow server hold a caller longer than
 * the timeout, log the answers. Called by policy/ checks; built by daemon.ts.
 */
import { promises as dnsp } from 'node:dns';
import { isIP } from 'node:net';

export type DnsSettings = {
  /** "ADDRESS" or "ADDRESS:PORT" ("[v6]:PORT"); empty: the system's resolvers. */
  servers: readonly string[];
  timeoutMs: number;
  cacheEntries: number;
  maxTtlMs: number;
  negativeTtlMs: number;
};

/** What mailauth (and dns.promises.resolve) answer with, for the types moat asks. */
export type Answer = unknown[];

type Entry = { expires: number; answer?: Answer; error?: { code: string; message: string } };

const NEGATIVE = new Set(['ENOTFOUND', 'ENODATA']);
const TYPES = new Set(['A', 'AAAA', 'TXT', 'MX', 'PTR', 'CNAME', 'NS']);

export class DnsError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'DnsError';
    this.code = code;
  }
}

export class DnsResolver {
  readonly #settings: DnsSettings;
  readonly #resolver: dnsp.Resolver;
  readonly #cache = new Map<string, Entry>();
  readonly #inflight = new Map<string, Promise<Answer>>();
  readonly #now: () => number;
  /** Queries sent to a server (not answered from the cache); for tests and the benchmark. */
  queries = 0;

  constructor(settings: DnsSettings, opts: { now?: () => number } = {}) {
    this.#settings = settings;
    this.#now = opts.now ?? Date.now;
    this.#resolver = new dnsp.Resolver({ timeout: settings.timeoutMs, tries: 1 });
    if (settings.servers.length) this.#resolver.setServers([...settings.servers]);
  }

  /** dns.promises.resolve(name, type), cached. Bound, so it can be handed over as a function. */
  resolve = (name: string, type = 'A'): Promise<Answer> => {
    const rrtype = String(type).toUpperCase();
    const host = String(name).toLowerCase().replace(/\.$/, '');
    if (!TYPES.has(rrtype)) return Promise.reject(new DnsError('ENOTIMP', `moat does not look up ${rrtype} records`));
    if (host.length === 0 || host.length > 253) return Promise.reject(new DnsError('EBADNAME', `not a DNS name: ${JSON.stringify(host.slice(0, 64))}`));
    const key = `${rrtype} ${host}`;
    const now = this.#now();
    const hit = this.#cache.get(key);
    if (hit && hit.expires > now) {
      if (hit.error) return Promise.reject(new DnsError(hit.error.code, hit.error.message));
      return Promise.resolve(hit.answer!);
    }
    if (hit) this.#cache.delete(key);
    const running = this.#inflight.get(key);
    if (running) return running;
    const p = this.#query(host, rrtype, key).finally(() => this.#inflight.delete(key));
    this.#inflight.set(key, p);
    return p;
  };

  /** Drops every cached answer. */
  clear(): void {
    this.#cache.clear();
  }

  get cached(): number {
    return this.#cache.size;
  }

  async #query(host: string, rrtype: string, key: string): Promise<Answer> {
    this.queries++;
    const s = this.#settings;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new DnsError('ETIMEOUT', `DNS lookup of ${host} ${rrtype} timed out`)), s.timeoutMs);
    });
    try {
      let answer: Answer;
      let ttlMs = s.maxTtlMs;
      if (rrtype === 'A' || rrtype === 'AAAA') {
        const rows = await Promise.race([rrtype === 'A' ? this.#resolver.resolve4(host, { ttl: true }) : this.#resolver.resolve6(host, { ttl: true }), timeout]);
        answer = rows.map((r) => r.address);
        if (rows.length) ttlMs = Math.min(ttlMs, Math.min(...rows.map((r) => r.ttl)) * 1000);
      } else {
        answer = (await Promise.race([this.#resolver.resolve(host, rrtype), timeout])) as Answer;
      }
      this.#store(key, { expires: this.#now() + ttlMs, answer });
      return answer;
    } catch (e) {
      const code = (e as { code?: string }).code ?? 'EFAIL';
      const err = e instanceof DnsError ? e : new DnsError(code, `DNS lookup of ${host} ${rrtype} failed: ${code}`);
      if (NEGATIVE.has(code)) this.#store(key, { expires: this.#now() + s.negativeTtlMs, error: { code, message: err.message } });
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  #store(key: string, e: Entry): void {
    if (e.expires <= this.#now()) return;
    this.#cache.set(key, e);
    while (this.#cache.size > this.#settings.cacheEntries) {
      const oldest = this.#cache.keys().next().value as string;
      this.#cache.delete(oldest);
    }
  }
}

/** True when the setting is an address, optionally with a port: 1.2.3.4, 1.2.3.4:53, [::1]:53, ::1. */
export function isDnsServer(s: string): boolean {
  if (isIP(s)) return true;
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|(\d{1,3}(?:\.\d{1,3}){3})):(\d{1,5})$/.exec(s);
  if (!m) return false;
  const port = Number(m[3]);
  const host = m[1] ?? m[2]!;
  return port >= 1 && port <= 65535 && (m[1] ? isIP(host) === 6 : isIP(host) === 4);
}
