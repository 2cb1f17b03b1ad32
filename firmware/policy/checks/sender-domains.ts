/*
 * policy/checks/sender-domains.ts: allow and deny lists of MAIL FROM domain
 * suffixes ("example.net" covers example.net and every name under it).
 * A denied suffix is refused with 554 5.7.1; an allowed one ends the sender
 * checks with accept (the remaining checks of the phase are skipped).
 *
 * Must never open the relay: relay control is its own list (policy/relay-control.ts),
 * checked at RCPT whatever this answers. The null sender is no domain: continue.
 * Listed as `sender-domains`.
 */
import { CONTINUE, type Check } from '../chain.ts';
import type { CheckServices } from '../registry.ts';
import { PolicyReplies } from '../replies.ts';

/** True when domain is one of the suffixes or under one of them. */
export function matchesSuffix(domain: string, suffixes: readonly string[]): string | null {
  const d = domain.toLowerCase();
  for (const s of suffixes) if (d === s || d.endsWith('.' + s)) return s;
  return null;
}

export function senderDomainsCheck(s: CheckServices): Check {
  const { allow, deny } = s.config.policy.senders;
  return {
    name: 'sender-domains',
    run(ctx) {
      const domain = ctx.tx.from?.domain;
      if (!domain) return CONTINUE;
      const denied = matchesSuffix(domain, deny);
      if (denied) return { action: 'reject', reply: PolicyReplies.senderDenied(), reason: `deny-list: ${denied}` };
      const allowed = matchesSuffix(domain, allow);
      if (allowed) return { action: 'accept', reason: `allow-list: ${allowed}` };
      return CONTINUE;
    },
  };
}
