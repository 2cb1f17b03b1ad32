/*
 * delivery/mx.ts: where mail for a domain goes, as RFC 5321 §5.1 says.
 *
 * MX records are sorted by preference, with random order among equal
 * preferences (so load spreads over equal hosts); every address (A and AAAA)
 * of each host is listed, in the order the host gave them. A domain without MX
 * records but with an address gets the implicit MX (the domain itself, §5.1);
 * a "null MX" (a single MX of preference 0 and exchange ".", RFC 7505) says the
 * domain accepts no mail. When moat itself (one of `self`) is among the
 * exchanges, only hosts of lower preference are kept (§5.1's loop rule), and
 * none at all when moat is the best: the mail would loop.
 *
 * Outcomes: hosts to try; permanent (the domain does not exist, has a null
 * MX, or no host has an address); or temporary (DNS failed or timed out, or
 * every host's lookup failed temporarily): retry later, never bounce on it.
 *
 * Must never: treat a DNS failure as "no such domain", return a host list
 * with the domain's own loop in it, or ask for more than MAX_HOSTS hosts
 * (a hostile zone may list hundreds). Called by outbound delivery.
 */
import type { DnsResolver } from '../dns/resolver.ts';

export type MxHost = { host: string; preference: number; addresses: string[]; implicit?: true };

export type MxOutcome =
  | { kind: 'hosts'; hosts: MxHost[] }
  | { kind: 'permanent'; reason: 'no-such-domain' | 'null-mx' | 'no-address' | 'mx-loop'; text: string }
  | { kind: 'temporary'; text: string };

/** Hosts looked up per domain at most (Postfix's smtp_mx_address_limit is 5 addresses; we keep hosts). */
export const MAX_HOSTS = 10;

const NO_RECORD = new Set(['ENODATA']);
const NO_NAME = new Set(['ENOTFOUND']);

type Resolve = DnsResolver['resolve'];

function code(e: unknown): string {
  return String((e as { code?: string }).code ?? 'EFAIL');
}

/** Shuffles equal-preference runs of an already sorted list, in place. */
function shuffleTies(list: Array<{ exchange: string; priority: number }>, random: () => number): void {
  for (let i = 0; i < list.length; ) {
    let j = i + 1;
    while (j < list.length && list[j]!.priority === list[i]!.priority) j++;
    for (let k = j - 1; k > i; k--) {
      const r = i + Math.floor(random() * (k - i + 1));
      [list[k], list[r]] = [list[r]!, list[k]!];
    }
    i = j;
  }
}

/** A and AAAA of a host: the addresses, 'none' when it has none, or 'temporary' when DNS failed. */
async function addressesOf(resolve: Resolve, host: string): Promise<string[] | 'none' | 'temporary'> {
  const [a, aaaa] = await Promise.allSettled([resolve(host, 'A'), resolve(host, 'AAAA')]);
  const out: string[] = [];
  let temporary = false;
  for (const r of [a, aaaa]) {
    if (r.status === 'fulfilled') out.push(...(r.value as string[]).filter((x) => typeof x === 'string'));
    else if (!NO_RECORD.has(code(r.reason)) && !NO_NAME.has(code(r.reason))) temporary = true;
  }
  if (out.length) return out;
  return temporary ? 'temporary' : 'none';
}

export async function resolveMx(
  domain: string,
  resolve: Resolve,
  opts: { self?: readonly string[]; random?: () => number } = {},
): Promise<MxOutcome> {
  const name = domain.toLowerCase().replace(/\.$/, '');
  const random = opts.random ?? Math.random;
  const self = new Set((opts.self ?? []).map((s) => s.toLowerCase().replace(/\.$/, '')));
  let records: Array<{ exchange: string; priority: number }>;
  try {
    const answer = (await resolve(name, 'MX')) as Array<{ exchange: string; priority: number }>;
    records = answer.filter((r) => r && typeof r.exchange === 'string' && Number.isInteger(r.priority));
  } catch (e) {
    const c = code(e);
    if (NO_NAME.has(c)) return { kind: 'permanent', reason: 'no-such-domain', text: `domain ${name} does not exist` };
    if (!NO_RECORD.has(c)) return { kind: 'temporary', text: `MX lookup for ${name} failed (${c})` };
    records = [];
  }
  if (records.length === 0) {
    // the implicit MX: the domain itself
    const addrs = await addressesOf(resolve, name);
    if (addrs === 'temporary') return { kind: 'temporary', text: `address lookup for ${name} failed` };
    if (addrs === 'none') return { kind: 'permanent', reason: 'no-address', text: `domain ${name} has no MX and no address` };
    return { kind: 'hosts', hosts: [{ host: name, preference: 0, addresses: addrs, implicit: true }] };
  }
  const exchanges = records.map((r) => ({ exchange: r.exchange.toLowerCase().replace(/\.$/, ''), priority: r.priority }));
  if (exchanges.some((r) => r.exchange === '' && r.priority === 0) && exchanges.length === 1)
    return { kind: 'permanent', reason: 'null-mx', text: `domain ${name} accepts no mail (null MX)` };
  exchanges.sort((x, y) => x.priority - y.priority);
  shuffleTies(exchanges, random);
  // the loop rule: only hosts better than moat itself
  const mine = exchanges.find((r) => self.has(r.exchange));
  const usable = (mine ? exchanges.filter((r) => r.priority < mine.priority) : exchanges).filter((r) => r.exchange !== '').slice(0, MAX_HOSTS);
  if (usable.length === 0)
    return mine
      ? { kind: 'permanent', reason: 'mx-loop', text: `mail for ${name} loops back to this host (it is the best MX)` }
      : { kind: 'permanent', reason: 'no-address', text: `domain ${name} has no usable MX host` };
  const looked = await Promise.all(usable.map(async (r) => ({ r, addrs: await addressesOf(resolve, r.exchange) })));
  const hosts: MxHost[] = [];
  let temporary = false;
  for (const { r, addrs } of looked) {
    if (addrs === 'temporary') temporary = true;
    else if (addrs !== 'none') hosts.push({ host: r.exchange, preference: r.priority, addresses: addrs });
  }
  if (hosts.length) return { kind: 'hosts', hosts };
  if (temporary) return { kind: 'temporary', text: `address lookups for the MX hosts of ${name} failed` };
  return { kind: 'permanent', reason: 'no-address', text: `no MX host of ${name} has an address` };
}

/**
 * True only when DNS says right now that the domain publishes a null MX (one
 * MX record, preference 0, exchange "."): what RCPT can refuse with 556 5.1.10
 * (RFC 7505 §4.2). Any other answer, an error or a timeout is false: delivery
 * decides later.
 */
export async function hasNullMx(domain: string, resolve: Resolve): Promise<boolean> {
  try {
    const answer = (await resolve(domain.toLowerCase().replace(/\.$/, ''), 'MX')) as Array<{ exchange: string; priority: number }>;
    return answer.length === 1 && answer[0]!.priority === 0 && answer[0]!.exchange.replace(/\.$/, '') === '';
  } catch {
    return false;
  }
}
