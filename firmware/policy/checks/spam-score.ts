/*
 * policy/checks/spam-score.ts: the message's one spam score, from the points
 * the checks gave the session and the transaction (DNSBL weights, SPF, HELO,
 * DKIM/DMARC, GTUBE). At policy.spam.rejectScore the message is refused
 * (550 5.7.1); otherwise, when any check gave points, X-Spam-Score and
 * X-Spam-Status header fields are added, and X-Spam-Flag: YES from
 * policy.spam.tagScore on, for the internal server to file on. A message no
 * check said anything about goes on unchanged.
 *
 * Must never put client text in a header (only check names and numbers).
 * Listed last in the data chain as `spam-score`.
 */
import { totalScore, type Check } from '../chain.ts';
import type { CheckServices } from '../registry.ts';
import { PolicyReplies } from '../replies.ts';

export function spamScoreCheck(s: CheckServices): Check {
  const cfg = s.config.policy.spam;
  return {
    name: 'spam-score',
    run(ctx) {
      const score = totalScore(ctx);
      const tests = [...ctx.sessionScore, ...ctx.heloScore, ...ctx.tx.score].map((x) => `${x.check}=${x.points}`).join(',') || 'none';
      const reason = `score ${score} (${tests})`;
      if (score >= cfg.rejectScore) return { action: 'reject', reply: PolicyReplies.spam(), reason };
      const spam = score >= cfg.tagScore;
      // a message no check had anything to say about goes on unchanged
      if (ctx.sessionScore.length + ctx.heloScore.length + ctx.tx.score.length === 0) return { action: 'continue', reason };
      ctx.tx.headers.push(
        `X-Spam-Score: ${score.toFixed(1)}\r\n` +
          `X-Spam-Status: ${spam ? 'Yes' : 'No'}, score=${score.toFixed(1)} tagged_above=${cfg.tagScore} rejected_above=${cfg.rejectScore} tests=${tests}\r\n` +
          (spam ? 'X-Spam-Flag: YES\r\n' : ''),
      );
      return spam ? { action: 'continue', reason: `tagged: ${reason}` } : { action: 'continue', reason };
    },
  };
}
