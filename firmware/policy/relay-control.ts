/*
 * policy/relay-control.ts: may this recipient be relayed at all?
 *
 * The relay decision stands apart from every other check, so that no
 * allow-list meant for spam filtering can ever open the relay (Postfix's
 * smtpd_relay_restrictions lesson). Inbound, only the organisation's own
 * domains are permitted, compared case-insensitively on the normalised
 * (ASCII, lower case) domain, exactly: a subdomain or a look-alike is foreign.
 * Outbound, a client whose address is in internal.networks may send to any
 * domain; that is the only way a foreign recipient is permitted.
 *
 * Must never permit by default: anything not explicitly local is refused.
 * Called by smtp/inbound.ts at RCPT TO, after policy/address.ts parsed the path.
 */
import { BlockList, isIP } from 'node:net';
import type { Mailbox } from './address.ts';

export type RelayVerdict = { verdict: 'permit'; reason: 'local-domain' | 'internal-network' } | { verdict: 'reject'; reason: 'relay-denied' | 'no-domain' };

/** internalClient: the client's address is in internal.networks (see InternalNetworks). */
export function checkRelay(mailbox: Mailbox, localDomains: ReadonlySet<string>, internalClient = false): RelayVerdict {
  if (mailbox.domain === '') return { verdict: 'reject', reason: 'no-domain' };
  if (localDomains.has(mailbox.domain)) return { verdict: 'permit', reason: 'local-domain' };
  if (internalClient) return { verdict: 'permit', reason: 'internal-network' };
  return { verdict: 'reject', reason: 'relay-denied' };
}

/** The internal networks (CIDR list of the configuration), for the relay decision. */
export class InternalNetworks {
  readonly #list = new BlockList();
  readonly #empty: boolean;

  constructor(cidrs: readonly string[]) {
    for (const c of cidrs) {
      const [addr, bits] = c.split('/');
      const type = isIP(addr!) === 6 ? 'ipv6' : 'ipv4';
      if (bits === undefined) this.#list.addAddress(addr!, type);
      else this.#list.addSubnet(addr!, Number(bits), type);
    }
    this.#empty = cidrs.length === 0;
  }

  has(ip: string): boolean {
    if (this.#empty) return false;
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
    const a = mapped ? mapped[1]! : ip;
    const v = isIP(a);
    return v !== 0 && this.#list.check(a, v === 6 ? 'ipv6' : 'ipv4');
  }
}
