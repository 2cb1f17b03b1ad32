/*
 * policy/chain.ts: the policy chain of one SMTP phase, and the runner.
 *
 * Policy is data (STYLE 4): each phase has an ordered list of named checks
 * from the configuration. A check answers with a Decision:
 *   continue  no opinion, ask the next check
 *   accept    a definite yes for this phase: the remaining checks are skipped
 *   reject    a definite no (5xx), tempfail a temporary no (4xx); `drop`
 *             closes the connection after the reply
 *   tag       no verdict, but spam points (and a reason) for the message score
 * The first definite answer wins. Every decision is logged with the check's
 * name and its reason.
 *
 * Fail closed (STYLE 5): a check that throws, or has not answered after
 * policy.checkTimeoutMs, yields 451 4.7.0, never "continue". A check that must
 * pass on a DNS timeout (the DNSBL) decides that itself, inside run().
 *
 * Must never: decide relaying (policy/relay-control.ts has its own list, so an
 * accept here can never open the relay); put client text into a reply.
 * Called by policy/policy.ts; the checks live in policy/checks/.
 */
import type { Logger } from '../log/logger.ts';
import type { Phase } from './check-names.ts';
import { PolicyReplies, type PolicyReply } from './replies.ts';
import type { RspamdOutcome } from './checks/rspamd.ts';

export type Decision =
  | { action: 'continue'; reason?: string; /** Tarpit: wait this long before the next check (outside the check's timeout). */ delayMs?: number }
  | { action: 'accept'; reason: string }
  | { action: 'reject' | 'tempfail'; reply: PolicyReply; reason: string; drop?: boolean }
  | { action: 'tag'; reason: string; score: number };

export const CONTINUE: Decision = { action: 'continue' };

/** What the checks of a session share. Lives from connect to close; `tx` is reset per transaction. */
export type PolicyContext = {
  readonly cid: string;
  /** The client's address (IPv4-mapped IPv6 shown as IPv4). */
  readonly ip: string;
  /** Our address on this connection. */
  readonly localAddress: string;
  /** The client is in internal.networks. */
  readonly internal: boolean;
  helo: string;
  /** Per transaction (MAIL … end of data). */
  tx: Transaction;
  /** Spam points of the connection (connect checks), carried into every message. */
  sessionScore: Score[];
  /** Spam points of the HELO/EHLO checks; a new HELO/EHLO replaces them. */
  heloScore: Score[];
};

export type Score = { check: string; points: number; reason: string };

export type Transaction = {
  from: { address: string; domain: string } | null;
  rcpt: { address: string; domain: string } | null;
  score: Score[];
  /** Header fields to add (CRLF-terminated lines), from the data checks. */
  headers: string[];
  /** Memo of the SPF evaluation, shared by the spf and anti-spoofing checks. */
  spf: Promise<SpfOutcome> | null;
  /** Facts the data phase gathered while reading the message back. */
  body: BodyFacts | null;
  /** The GTUBE stage that watched this message's DATA stream, if the gtube check is listed. */
  gtube: { readonly found: boolean } | null;
};

export type SpfOutcome = { result: string; domain: string; info: string };

export type BodyFacts = {
  /** mailauth's result, when the authentication check is in the data chain. */
  auth: AuthOutcome | null;
  /** The external scorer's answer, when the rspamd check is in the data chain. */
  rspamd?: RspamdOutcome;
};

export type AuthOutcome = {
  /** The Authentication-Results (and Received-SPF) header lines, CRLF-terminated. */
  headers: string;
  dkim: Array<{ domain: string; result: string }>;
  dmarc: { result: string; policy: string; domain: string } | null;
};

export function newTransaction(): Transaction {
  return { from: null, rcpt: null, score: [], headers: [], spf: null, body: null, gtube: null };
}

export type Check = {
  readonly name: string;
  run(ctx: PolicyContext, phase: Phase): Decision | Promise<Decision>;
};

export type ChainResult =
  | { verdict: 'pass' }
  | { verdict: 'accept'; check: string }
  | { verdict: 'refuse'; check: string; reply: PolicyReply; drop: boolean };

export class PhaseChain {
  readonly phase: Phase;
  readonly checks: readonly Check[];
  readonly #timeoutMs: number;
  readonly #log: Logger;

  constructor(phase: Phase, checks: readonly Check[], timeoutMs: number, log: Logger) {
    this.phase = phase;
    this.checks = checks;
    this.#timeoutMs = timeoutMs;
    this.#log = log;
  }

  async run(ctx: PolicyContext): Promise<ChainResult> {
    for (const check of this.checks) {
      const d = await this.#decide(check, ctx);
      const entry = { ev: 'policy', cid: ctx.cid, ip: ctx.ip, phase: this.phase, check: check.name, decision: d.action, reason: d.reason };
      if (d.action === 'continue') {
        if (d.delayMs) {
          this.#log.info({ ...entry, delayMs: d.delayMs }, 'policy');
          await new Promise((r) => setTimeout(r, d.delayMs).unref());
        } else this.#log.debug(entry, 'policy');
        continue;
      }
      if (d.action === 'tag') {
        this.#log.info({ ...entry, score: d.score }, 'policy');
        const bucket = this.phase === 'connect' ? ctx.sessionScore : this.phase === 'helo' ? ctx.heloScore : ctx.tx.score;
        bucket.push({ check: check.name, points: d.score, reason: d.reason });
        continue;
      }
      if (d.action === 'accept') {
        this.#log.info(entry, 'policy');
        return { verdict: 'accept', check: check.name };
      }
      this.#log.info({ ...entry, code: d.reply.responseCode, drop: Boolean(d.drop) }, 'policy');
      return { verdict: 'refuse', check: check.name, reply: d.reply, drop: Boolean(d.drop) || d.reply.responseCode === 421 };
    }
    return { verdict: 'pass' };
  }

  /** One check, failing closed on a throw or a timeout. */
  async #decide(check: Check, ctx: PolicyContext): Promise<Decision> {
    let timer: NodeJS.Timeout | undefined;
    try {
      const answer = check.run(ctx, this.phase);
      if (!(answer instanceof Promise)) return answer;
      const timeout = new Promise<Decision>((resolve) => {
        timer = setTimeout(() => resolve({ action: 'tempfail', reply: PolicyReplies.checkFailed(), reason: `timeout after ${this.#timeoutMs} ms` }), this.#timeoutMs);
      });
      return await Promise.race([answer, timeout]);
    } catch (e) {
      this.#log.warn({ ev: 'policy-error', cid: ctx.cid, phase: this.phase, check: check.name, err: (e as Error).message }, 'policy check failed');
      return { action: 'tempfail', reply: PolicyReplies.checkFailed(), reason: 'check-failed' };
    } finally {
      clearTimeout(timer);
    }
  }
}

/** The decision an action from the configuration stands for. */
export function byAction(action: 'reject' | 'tempfail' | 'tag' | 'ignore', reply: PolicyReply, reason: string, score: number): Decision {
  if (action === 'reject') return { action: 'reject', reply, reason };
  if (action === 'tempfail') return { action: 'tempfail', reply: PolicyReplies.tempfailByConfig(), reason };
  if (action === 'tag') return { action: 'tag', reason, score };
  return { action: 'continue', reason };
}

/** Total spam points of the session and the current transaction. */
export function totalScore(ctx: PolicyContext): number {
  let s = 0;
  for (const x of ctx.sessionScore) s += x.points;
  for (const x of ctx.heloScore) s += x.points;
  for (const x of ctx.tx.score) s += x.points;
  return Math.round(s * 100) / 100;
}
