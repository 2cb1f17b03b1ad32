/*
 * policy/checks/harvest.ts: directory-harvest defence.
 *
 * Unknown recipients are counted per client address within
 * policy.harvest.windowMs (noteUnknownRecipient, called when recipient
 * validation said "unknown"). From tarpitAfter on, every RCPT reply to that
 * address is delayed (tarpitMs, doubling with each further unknown recipient,
 * at most tarpitMaxMs); at dropAfter the session is dropped (421 4.7.0) and the
 * address blocked for policy.blocks.blockMs. Other addresses are not affected.
 *
 * Must never delay or block internal clients. Listed in the rcpt chain as `harvest`.
 */
import { CONTINUE, type Check, type PolicyContext } from '../chain.ts';
import type { CheckServices } from '../registry.ts';
import { PolicyReplies, type PolicyReply } from '../replies.ts';

export function harvestCheck(s: CheckServices): Check {
  const h = s.config.policy.harvest;
  return {
    name: 'harvest',
    run(ctx) {
      if (ctx.internal) return CONTINUE;
      if (s.tracker.blocked(ctx.ip)) return { action: 'tempfail', reply: PolicyReplies.blocked(), reason: 'blocked', drop: true };
      const n = s.tracker.unknownRecipients.count(ctx.ip);
      if (n < h.tarpitAfter || h.tarpitMs === 0) return CONTINUE;
      const delayMs = Math.min(h.tarpitMaxMs, h.tarpitMs * 2 ** Math.min(20, n - h.tarpitAfter));
      return { action: 'continue', reason: `tarpit: ${n} unknown recipients`, delayMs };
    },
  };
}

/** Counts an unknown recipient; returns the 421 that drops the session once the address earned a block. */
export function noteUnknownRecipient(s: CheckServices, ctx: PolicyContext): PolicyReply | null {
  if (ctx.internal) return null;
  const h = s.config.policy.harvest;
  const n = s.tracker.unknownRecipients.hit(ctx.ip);
  if (n < h.dropAfter) return null;
  s.tracker.block(ctx.ip, s.config.policy.blocks.blockMs, 'harvest');
  s.tracker.unknownRecipients.reset(ctx.ip);
  s.log.warn({ ev: 'block', cid: ctx.cid, ip: ctx.ip, reason: 'harvest', unknown: n, blockMs: s.config.policy.blocks.blockMs }, 'address blocked');
  return PolicyReplies.harvest();
}
