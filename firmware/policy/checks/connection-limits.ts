/*
 * policy/checks/connection-limits.ts: concurrent connections and the
 * connection rate per client address (421 4.7.0). The total cap is
 * inbound.maxConnections, answered by smtp/server-hooks.ts before any check.
 *
 * The counting happens when a connection is accepted (policy.ts opened()), so
 * the numbers include the connection being checked. Must never count internal
 * clients against the limits. Listed in the connect chain as `connection-limits`.
 */
import { CONTINUE, type Check } from '../chain.ts';
import type { CheckServices } from '../registry.ts';
import { PolicyReplies } from '../replies.ts';

export function connectionLimitsCheck(s: CheckServices): Check {
  const c = s.config.policy.connections;
  return {
    name: 'connection-limits',
    run(ctx) {
      if (ctx.internal) return CONTINUE;
      const open = s.tracker.concurrent(ctx.ip);
      if (c.perIp > 0 && open > c.perIp) return { action: 'tempfail', reply: PolicyReplies.tooManyFromIp(), reason: `${open} open, limit ${c.perIp}`, drop: true };
      const recent = s.tracker.connections.count(ctx.ip);
      if (c.ratePerIp > 0 && recent > c.ratePerIp)
        return { action: 'tempfail', reply: PolicyReplies.connectionRate(), reason: `${recent} connections in ${c.rateWindowMs} ms, limit ${c.ratePerIp}`, drop: true };
      return CONTINUE;
    },
  };
}
