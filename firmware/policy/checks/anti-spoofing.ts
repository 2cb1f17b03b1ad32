/*
 * policy/checks/anti-spoofing.ts: a client from outside the internal networks
 * may not use one of our own domains as its MAIL FROM unless SPF passes for it
 * (550 5.7.1). SPF is the transaction's shared evaluation (checks/spf.ts).
 *
 * Must never let an SPF error count as a pass. Listed as `anti-spoofing`.
 */
import { CONTINUE, type Check } from '../chain.ts';
import type { CheckServices } from '../registry.ts';
import { PolicyReplies } from '../replies.ts';
import { spfOf } from './spf.ts';

export function antiSpoofingCheck(s: CheckServices): Check {
  return {
    name: 'anti-spoofing',
    async run(ctx) {
      const domain = ctx.tx.from?.domain;
      if (ctx.internal || !domain || !s.localDomains.has(domain)) return CONTINUE;
      const r = await spfOf(s, ctx);
      if (r.result === 'pass') return { action: 'continue', reason: 'local sender, spf=pass' };
      return { action: 'reject', reply: PolicyReplies.spoofedSender(), reason: `local sender from outside, spf=${r.result}` };
    },
  };
}
