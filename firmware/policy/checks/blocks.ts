/*
 * policy/checks/blocks.ts: refuses an address that earned a temporary block
 * (directory harvest, repeated relay attempts) with 421 4.7.0, and counts the
 * relay attempts that earn one.
 *
 * Must never block an internal client. Listed in a chain as `blocks`;
 * noteRelayAttempt is called by policy/policy.ts when relay control refused.
 */
import { CONTINUE, type Check, type PolicyContext } from '../chain.ts';
import type { CheckServices } from '../registry.ts';
import { PolicyReplies, type PolicyReply } from '../replies.ts';

export function blocksCheck(s: CheckServices): Check {
  return {
    name: 'blocks',
    run(ctx) {
      const reason = s.tracker.blocked(ctx.ip);
      if (!reason) return CONTINUE;
      return { action: 'tempfail', reply: PolicyReplies.blocked(), reason: `blocked: ${reason}`, drop: true };
    },
  };
}

/** Counts a refused relay attempt; at policy.blocks.relayAttempts the address is blocked and the session dropped. */
export function noteRelayAttempt(s: CheckServices, ctx: PolicyContext): PolicyReply | null {
  const b = s.config.policy.blocks;
  if (b.relayAttempts === 0 || ctx.internal) return null;
  const n = s.tracker.relayAttempts.hit(ctx.ip);
  if (n < b.relayAttempts) return null;
  s.tracker.block(ctx.ip, b.blockMs, 'relay-attempts');
  s.tracker.relayAttempts.reset(ctx.ip);
  s.log.warn({ ev: 'block', cid: ctx.cid, ip: ctx.ip, reason: 'relay-attempts', attempts: n, blockMs: b.blockMs }, 'address blocked');
  return PolicyReplies.relayAbuse();
}
