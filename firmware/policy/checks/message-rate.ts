/*
 * policy/checks/message-rate.ts: messages (MAIL commands) per client address
 * per policy.connections.rateWindowMs; over policy.connections.messagesPerIp
 * the MAIL is answered 450 4.7.1 (the client sends it later).
 *
 * Must never limit internal clients. Listed in the mail chain as `message-rate`.
 */
import { CONTINUE, type Check } from '../chain.ts';
import type { CheckServices } from '../registry.ts';
import { PolicyReplies } from '../replies.ts';

export function messageRateCheck(s: CheckServices): Check {
  const c = s.config.policy.connections;
  return {
    name: 'message-rate',
    run(ctx) {
      if (ctx.internal || c.messagesPerIp === 0) return CONTINUE;
      const n = s.tracker.messages.hit(ctx.ip);
      if (n > c.messagesPerIp) return { action: 'tempfail', reply: PolicyReplies.messageRate(), reason: `${n} messages in ${c.rateWindowMs} ms, limit ${c.messagesPerIp}` };
      return CONTINUE;
    },
  };
}
