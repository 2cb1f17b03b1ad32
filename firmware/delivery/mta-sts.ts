/*
 * delivery/mta-sts.ts: MTA-STS (RFC 8461) policies of destination domains,
 * for outbound delivery to enforce.
 *
 * The policy of a domain comes from mailauth's implementation (getPolicy: the
 * _mta-sts TXT record through moat's resolver, then the policy file from
 * https://mta-sts.DOMAIN/.well-known/mta-sts.txt over verified HTTPS, no
 * redirects), bounded in time (timeoutMs for the whole fetch) and size
 * (maxPolicyBytes). Policies are kept in memory up to their max_age and
 * handed back to getPolicy as the known policy, so that a policy whose TXT id
 * did not change is not fetched again, and a known policy still applies when
 * DNS or the policy host fails (RFC 8461 §5.1). The TXT record is looked at
 * again at most every RECHECK_MS. A domain without a policy, or whose first
 * fetch fails, has none (§5: delivery goes on as without MTA-STS).
 *
 * Must never: follow a redirect or accept a policy over unverified HTTPS (mailauth
 * refuses both), fetch more than maxPolicyBytes or wait longer than timeoutMs,
 * keep more than maxEntries domains. Called by delivery/outbound.ts.
 */
import { getPolicy, validateMx } from 'mailauth/lib/mta-sts.js';
import type { DnsResolver } from '../dns/resolver.ts';

export type StsMode = 'enforce' | 'testing' | 'none';
export type StsPolicy = { mode: StsMode; mx: string[]; id: string | false; error?: string };

type Known = { id: string | false; mode: StsMode; mx?: string[]; maxAge?: number; expires?: string; [k: string]: unknown };

/** How often a cached policy's TXT record is asked again (a changed id fetches the new policy). */
const RECHECK_MS = 5 * 60_000;

export type MtaStsOptions = {
  resolve: DnsResolver['resolve'];
  timeoutMs: number;
  maxPolicyBytes: number;
  maxEntries: number;
  now?: () => number;
};

export class MtaStsPolicies {
  readonly #o: MtaStsOptions;
  readonly #cache = new Map<string, { known: Known; checkedAt: number }>();
  readonly #now: () => number;

  constructor(o: MtaStsOptions) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
  }

  /** The policy that applies to mail for domain now. */
  async policyFor(domain: string): Promise<StsPolicy> {
    const d = domain.toLowerCase();
    const hit = this.#cache.get(d);
    const t = this.#now();
    if (hit && t - hit.checkedAt < RECHECK_MS && (!hit.known.expires || Date.parse(hit.known.expires) > t)) return view(hit.known);
    const r = (await getPolicy(d, hit?.known, {
      resolver: this.#o.resolve as never,
      timeout: this.#o.timeoutMs,
      maxPolicySize: this.#o.maxPolicyBytes,
    })) as { policy: Known & { error?: Error }; status: string };
    const known = r.policy;
    this.#cache.delete(d);
    this.#cache.set(d, { known, checkedAt: t });
    while (this.#cache.size > this.#o.maxEntries) this.#cache.delete(this.#cache.keys().next().value!);
    return view(known);
  }
}

function view(k: Known & { error?: unknown }): StsPolicy {
  const mode: StsMode = k.mode === 'enforce' || k.mode === 'testing' ? k.mode : 'none';
  return { mode, mx: Array.isArray(k.mx) ? k.mx : [], id: k.id, ...(k.error ? { error: String((k.error as Error).message ?? k.error) } : {}) };
}

/** Whether an MX host name is one the policy names (RFC 8461 §4.1; mailauth's validateMx). */
export function mxAllowed(host: string, policy: StsPolicy): boolean {
  return (validateMx(host, { mode: policy.mode, mx: policy.mx }) as { valid: boolean }).valid;
}
