/*
 * policy/checks/spf.ts: SPF (RFC 7208) of the MAIL FROM identity (or of the
 * HELO name for the null sender) through mailauth, with moat's DNS resolver,
 * and an action per result from policy.spf (fail → 550 5.7.23 by default,
 * temperror → 451 4.7.24, softfail → spam points).
 *
 * The evaluation is done once per transaction and shared with the
 * anti-spoofing check (spfOf). Its time is bounded by policy.checkTimeoutMs
 * (mailauth's maxElapsedTime: temperror after that). Must never evaluate
 * internal clients, never reply with the domain's explanation text.
 * Listed as `spf`.
 */
import { spf } from 'mailauth/lib/spf/index.js';
import { byAction, CONTINUE, type Check, type PolicyContext, type SpfOutcome } from '../chain.ts';
import type { CheckServices } from '../registry.ts';
import { PolicyReplies } from '../replies.ts';

/** The transaction's SPF result, evaluated on first use. */
export function spfOf(s: CheckServices, ctx: PolicyContext): Promise<SpfOutcome> {
  if (!ctx.tx.spf) {
    const from = ctx.tx.from;
    const helo = ctx.helo || ctx.ip;
    const sender = from?.address || `postmaster@${helo}`;
    ctx.tx.spf = spf({
      sender,
      ip: ctx.ip,
      helo,
      mta: s.config.hostname,
      resolver: s.resolver.resolve as never,
      maxElapsedTime: Math.max(10, s.config.policy.checkTimeoutMs - 100),
    }).then((r) => ({ result: String(r.status?.result ?? 'none'), domain: String((r as { domain?: string }).domain ?? ''), info: String((r as { info?: string }).info ?? '') }));
  }
  return ctx.tx.spf;
}

export function spfCheck(s: CheckServices): Check {
  const cfg = s.config.policy.spf;
  return {
    name: 'spf',
    async run(ctx) {
      if (ctx.internal) return CONTINUE;
      const r = await spfOf(s, ctx);
      const reason = `spf=${r.result}`;
      switch (r.result) {
        case 'pass':
          return { action: 'continue', reason };
        case 'fail':
          return byAction(cfg.fail, PolicyReplies.spfFail(), reason, cfg.score);
        case 'softfail':
          return byAction(cfg.softfail, PolicyReplies.spfSoft(), reason, cfg.score);
        case 'neutral':
          return byAction(cfg.neutral, PolicyReplies.spfSoft(), reason, cfg.score);
        case 'temperror':
          if (cfg.temperror === 'tempfail') return { action: 'tempfail', reply: PolicyReplies.spfTempfail(), reason };
          return byAction(cfg.temperror, PolicyReplies.spfTempfail(), reason, cfg.score);
        case 'permerror':
          return byAction(cfg.permerror, PolicyReplies.spfFail(), reason, cfg.score);
        default:
          return byAction(cfg.none, PolicyReplies.spfSoft(), reason, cfg.score);
      }
    },
  };
}
