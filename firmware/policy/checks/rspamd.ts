/*
 * policy/checks/rspamd.ts: an external scorer speaking rspamd's HTTP protocol
 * (POST /checkv2, the message as the body, the envelope in request headers,
 * a JSON answer with `score`), whose score is added to the message's spam
 * score. Off unless listed in the data chain.
 *
 * queryRspamd() streams the message read back from the spool as the request
 * body (nothing held in memory) and reads at most 1 MiB of answer. A scorer
 * that fails, answers nonsense or takes longer than policy.rspamd.timeoutMs
 * is handled by policy.rspamd.onFailure: `tempfail` (451 4.7.0, fail closed)
 * or `ignore` (the message goes on without its score). Must never send
 * anything but the message and its envelope, never follow a redirect.
 * Listed in the data chain as `rspamd`.
 */
import type { Readable } from 'node:stream';
import { CONTINUE, type Check, type PolicyContext } from '../chain.ts';
import type { CheckServices } from '../registry.ts';
import { PolicyReplies } from '../replies.ts';

export type RspamdOutcome = { score: number; action: string } | { error: string };

const MAX_ANSWER = 1024 * 1024;

export async function queryRspamd(s: CheckServices, ctx: PolicyContext, body: Readable, rcpts: readonly string[]): Promise<RspamdOutcome> {
  const cfg = s.config.policy.rspamd;
  const headers: Record<string, string> = { IP: ctx.ip, Helo: ctx.helo || ctx.ip, From: ctx.tx.from?.address ?? '', 'Mta-Name': s.config.hostname };
  if (rcpts.length) headers.Rcpt = rcpts.join(',');
  try {
    const res = await fetch(new URL('/checkv2', cfg.url), {
      method: 'POST',
      headers,
      body: body as unknown as ReadableStream,
      duplex: 'half',
      redirect: 'error',
      signal: AbortSignal.timeout(cfg.timeoutMs),
    } as RequestInit);
    if (res.status !== 200) {
      await res.body?.cancel();
      return { error: `HTTP ${res.status}` };
    }
    const chunks: Buffer[] = [];
    let n = 0;
    for await (const c of res.body as unknown as AsyncIterable<Uint8Array>) {
      n += c.length;
      if (n > MAX_ANSWER) return { error: 'answer too large' };
      chunks.push(Buffer.from(c));
    }
    const answer = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { score?: unknown; action?: unknown };
    if (typeof answer.score !== 'number' || !Number.isFinite(answer.score)) return { error: 'answer without a score' };
    return { score: Math.max(-1000, Math.min(1000, answer.score)), action: typeof answer.action === 'string' ? answer.action.slice(0, 40) : '' };
  } catch (e) {
    body.destroy();
    return { error: (e as Error).name === 'TimeoutError' ? `no answer within ${cfg.timeoutMs} ms` : (e as Error).message };
  }
}

export function rspamdCheck(s: CheckServices): Check {
  const cfg = s.config.policy.rspamd;
  return {
    name: 'rspamd',
    run(ctx) {
      const r = ctx.tx.body?.rspamd;
      if (!r) return CONTINUE;
      if ('error' in r) {
        if (cfg.onFailure === 'tempfail') return { action: 'tempfail', reply: PolicyReplies.checkFailed(), reason: `rspamd: ${r.error}` };
        return { action: 'continue', reason: `rspamd unavailable (${r.error}), ignored` };
      }
      const points = Math.round(r.score * cfg.weight * 100) / 100;
      if (points === 0) return { action: 'continue', reason: `rspamd score 0 (${r.action})` };
      return { action: 'tag', reason: `rspamd ${r.score} (${r.action})`, score: points };
    },
  };
}
