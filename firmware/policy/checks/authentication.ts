/*
 * policy/checks/authentication.ts: DKIM and DMARC of the whole message,
 * through mailauth with moat's DNS resolver, after the final dot and before
 * the commit.
 *
 * authenticateMessage() reads the message back from the spool (the bytes just
 * written, not yet committed) as a stream and hands it to mailauth: memory
 * stays bounded by the read-back stream's block size and its backpressure,
 * whatever the message size, and nothing is added to the DATA hot path (see
 * docs/architecture.md, "Policy chain"). mailauth keeps the header section
 * in memory while it parses, so that part is bounded by inbound.maxMessageSize.
 *
 * The check then adds mailauth's Authentication-Results (and Received-SPF)
 * header fields to the message, refuses a DMARC failure of a domain that
 * publishes p=reject (550 5.7.1, when policy.dmarc.enforceReject), and gives
 * spam points for other DMARC failures and for signatures that fail.
 * Must never treat a DNS error as a failure of the sender (temperror is no
 * verdict). Listed in the data chain as `authentication`.
 */
import type { Readable } from 'node:stream';
import { authenticate } from 'mailauth';
import { CONTINUE, type AuthOutcome, type Check, type PolicyContext } from '../chain.ts';
import type { CheckServices } from '../registry.ts';
import { PolicyReplies } from '../replies.ts';

/** Header lines as they may go into the message: CRLF line ends, folded lines start with white space, no other control characters. */
export function safeHeaderBlock(text: string): string {
  const lines = text.split(/\r\n|\r|\n/).filter((l) => l.length > 0);
  const out: string[] = [];
  for (const raw of lines) {
    const l = raw.replace(/[\x00-\x08\x0b-\x1f\x7f]/g, '');
    if (out.length === 0 && /^[ \t]/.test(l)) continue;
    if (!/^[ \t]/.test(l) && !/^[\x21-\x39\x3b-\x7e]+:/.test(l)) continue;
    out.push(l.slice(0, 998));
  }
  return out.map((l) => l + '\r\n').join('');
}

export async function authenticateMessage(s: CheckServices, ctx: PolicyContext, input: Readable): Promise<AuthOutcome> {
  const r = await authenticate(input, {
    ip: ctx.ip,
    helo: ctx.helo || ctx.ip,
    sender: ctx.tx.from?.address ?? '',
    mta: s.config.hostname,
    resolver: s.resolver.resolve as never,
    disableArc: true,
    disableBimi: true,
  });
  return {
    headers: safeHeaderBlock(r.headers ?? ''),
    dkim: (r.dkim?.results ?? []).map((x) => ({ domain: String(x.signingDomain ?? ''), result: String(x.status?.result ?? 'none') })),
    dmarc: r.dmarc ? { result: String(r.dmarc.status?.result ?? 'none'), policy: String(r.dmarc.policy ?? 'none'), domain: String(r.dmarc.domain ?? '') } : null,
  };
}

export function authenticationCheck(s: CheckServices): Check {
  const cfg = s.config.policy.dmarc;
  return {
    name: 'authentication',
    run(ctx) {
      const auth = ctx.tx.body?.auth;
      if (!auth) return CONTINUE;
      ctx.tx.headers.push(auth.headers);
      const dkim = auth.dkim.map((d) => `${d.domain}=${d.result}`).join(',') || 'none';
      const reason = `dkim=${dkim} dmarc=${auth.dmarc?.result ?? 'none'}${auth.dmarc ? ` p=${auth.dmarc.policy}` : ''}`;
      if (auth.dmarc?.result === 'fail') {
        if (auth.dmarc.policy === 'reject' && cfg.enforceReject) return { action: 'reject', reply: PolicyReplies.dmarcReject(), reason };
        return { action: 'tag', reason, score: cfg.failScore };
      }
      if (auth.dkim.some((d) => d.result === 'fail') && !auth.dkim.some((d) => d.result === 'pass')) return { action: 'tag', reason, score: cfg.dkimFailScore };
      return { action: 'continue', reason };
    },
  };
}
