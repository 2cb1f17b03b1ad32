/*
 * policy/relay-control.ts: may this recipient be relayed at all?
 *
 * The relay decision stands apart from every other check, so that no
 * allow-list meant for spam filtering can ever open the relay (Postfix's
 * smtpd_relay_restrictions lesson). Inbound, only the organisation's own
 * domains are permitted, compared case-insensitively on the normalised
 * (ASCII, lower case) domain, exactly: a subdomain or a look-alike is foreign.
 * Outbound relaying for internal networks comes with the outbound issue.
 *
 * Must never permit by default: anything not explicitly local is refused.
 * Called by smtp/inbound.ts at RCPT TO, after policy/address.ts parsed the path.
 */
import type { Mailbox } from './address.ts';

export type RelayVerdict = { verdict: 'permit'; reason: 'local-domain' } | { verdict: 'reject'; reason: 'relay-denied' | 'no-domain' };

export function checkRelay(mailbox: Mailbox, localDomains: ReadonlySet<string>): RelayVerdict {
  if (mailbox.domain === '') return { verdict: 'reject', reason: 'no-domain' };
  if (localDomains.has(mailbox.domain)) return { verdict: 'permit', reason: 'local-domain' };
  return { verdict: 'reject', reason: 'relay-denied' };
}
