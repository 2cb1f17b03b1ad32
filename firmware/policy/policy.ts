/*
 * policy/policy.ts: the anti-abuse policy of the inbound listener.
 *
 * Builds one PhaseChain per SMTP phase from policy.chain (names from
 * policy/check-names.ts, modules from policy/registry.ts), keeps a context
 * per session, and gives smtp/inbound.ts one call per phase: opened (at
 * accept), connect (before the banner), helo, mail, rcpt, the two notes that
 * count abuse (relay refused, unknown recipient), and dataEnd (after the final
 * dot, before the commit). Each returns a reply to send instead of going on,
 * or null.
 *
 * dataStages adds the GTUBE stage to the DATA stream (a chunk observer like
 * the scan stages). dataEnd reads the message back from the spool when a data
 * check needs the whole body (authentication: mailauth; rspamd: the external
 * scorer), bounded by policy.checkTimeoutMs and failing closed (451 4.7.0).
 *
 * Must never: decide relaying; keep a session's context after it closed;
 * hold a message in memory. Called by smtp/inbound.ts; built by daemon.ts.
 */
import { BlockList, isIP } from 'node:net';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Config } from '../config/schema.ts';
import type { DnsResolver } from '../dns/resolver.ts';
import type { Logger } from '../log/logger.ts';
import { AbuseTracker, type TrackerSettings } from './abuse-tracker.ts';
import { newTransaction, PhaseChain, type AuthOutcome, type BodyFacts, type PolicyContext } from './chain.ts';
import { PHASES, type CheckName, type Phase } from './check-names.ts';
import { noteRelayAttempt } from './checks/blocks.ts';
import { authenticateMessage } from './checks/authentication.ts';
import { GtubeStage } from './checks/gtube.ts';
import type { Stage } from '../scan/pipeline.ts';
import { noteUnknownRecipient } from './checks/harvest.ts';
import { queryRspamd } from './checks/rspamd.ts';
import { REGISTRY, type CheckServices } from './registry.ts';
import { PolicyReplies, type PolicyReply } from './replies.ts';

export type { PolicyReply };
export { PolicyReplies };

/** "::ffff:192.0.2.1" → "192.0.2.1"; anything else as it is. */
export function clientAddress(a: string | undefined): string {
  const s = String(a ?? '');
  const m = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(s);
  return m ? m[1]! : s;
}

function trackerSettings(config: Config): TrackerSettings {
  const p = config.policy;
  return { rateWindowMs: p.connections.rateWindowMs, harvestWindowMs: p.harvest.windowMs, relayWindowMs: p.blocks.windowMs, maxTracked: p.connections.maxTracked };
}

export class Policy {
  readonly tracker: AbuseTracker;
  readonly #services: CheckServices;
  readonly #chains: Record<Phase, PhaseChain>;
  readonly #sessions = new Map<string, PolicyContext>();
  readonly #internal = new BlockList();
  readonly #log: Logger;
  readonly #timeoutMs: number;
  readonly #settings: TrackerSettings;

  /**
   * opts.tracker: the tracker of the policy this one replaces (a configuration
   * commit), so blocks, counts, open connections and greylist entries carry
   * over; takeOver() gives it this configuration's windows once the new policy
   * is in force.
   */
  constructor(config: Config, resolver: DnsResolver, log: Logger, opts: { now?: () => number; tracker?: AbuseTracker } = {}) {
    const p = config.policy;
    this.#log = log;
    this.#timeoutMs = p.checkTimeoutMs;
    this.#settings = trackerSettings(config);
    this.tracker = opts.tracker ?? new AbuseTracker({ ...this.#settings, ...(opts.now ? { now: opts.now } : {}) });
    this.#services = { config, resolver, tracker: this.tracker, log, localDomains: new Set(config.inbound.localDomains), now: opts.now ?? Date.now };
    for (const net of config.internal.networks) {
      const [addr, bits] = net.split('/');
      const type = isIP(addr!) === 6 ? 'ipv6' : 'ipv4';
      if (bits === undefined) this.#internal.addAddress(addr!, type);
      else this.#internal.addSubnet(addr!, Number(bits), type);
    }
    const chains = {} as Record<Phase, PhaseChain>;
    for (const phase of PHASES) {
      const names = p.chain[phase] as readonly CheckName[];
      chains[phase] = new PhaseChain(phase, names.map((n) => REGISTRY[n](this.#services)), p.checkTimeoutMs, log);
    }
    this.#chains = chains;
  }

  /** This policy is now in force: the shared tracker takes its windows and bound. */
  takeOver(): void {
    this.tracker.reconfigure(this.#settings);
  }

  /** The checks of a phase, by name (for the log at start-up and for tests). */
  names(phase: Phase): string[] {
    return this.#chains[phase].checks.map((c) => c.name);
  }

  isInternal(ip: string): boolean {
    const v = isIP(ip);
    return v !== 0 && this.#internal.check(ip, v === 6 ? 'ipv6' : 'ipv4');
  }

  /** A connection was accepted: counts it and opens its context; returns what to call when it closes. */
  opened(c: { id: string; remoteAddress: string; localAddress?: string }): () => void {
    const ip = clientAddress(c.remoteAddress);
    const release = this.tracker.opened(ip);
    this.#sessions.set(c.id, {
      cid: c.id,
      ip,
      localAddress: clientAddress(c.localAddress),
      internal: this.isInternal(ip),
      helo: '',
      tx: newTransaction(),
      sessionScore: [],
      heloScore: [],
    });
    return () => {
      release();
      this.#sessions.delete(c.id);
    };
  }

  /** The client talked before the greeting (it is answered 554 and dropped by smtp/server-hooks.ts). */
  earlyTalker(c: { id: string; remoteAddress: string }): void {
    this.#log.info({ ev: 'policy', cid: c.id, ip: clientAddress(c.remoteAddress), phase: 'connect', check: 'pregreet', decision: 'reject', reason: 'talked before the greeting', code: 554, drop: true }, 'policy');
  }

  async connect(cid: string): Promise<PolicyReply | null> {
    return this.#run('connect', cid);
  }

  async helo(cid: string, name: string): Promise<PolicyReply | null> {
    const ctx = this.#sessions.get(cid);
    if (ctx) {
      ctx.helo = name;
      ctx.tx = newTransaction();
      ctx.heloScore = [];
    }
    return this.#run('helo', cid);
  }

  /** MAIL FROM: a new transaction (null sender: no mailbox). */
  async mail(cid: string, from: { address: string; domain: string } | null): Promise<PolicyReply | null> {
    const ctx = this.#sessions.get(cid);
    if (ctx) {
      ctx.tx = newTransaction();
      ctx.tx.from = from && from.address ? { address: from.address, domain: from.domain.toLowerCase() } : null;
    }
    return this.#run('mail', cid);
  }

  async rcpt(cid: string, to: { address: string; domain: string }): Promise<PolicyReply | null> {
    const ctx = this.#sessions.get(cid);
    if (ctx) ctx.tx.rcpt = { address: to.address, domain: to.domain.toLowerCase() };
    return this.#run('rcpt', cid);
  }

  /** Relay control refused a recipient: may earn the address a block (421, drop). */
  relayRefused(cid: string): PolicyReply | null {
    const ctx = this.#sessions.get(cid);
    return ctx ? noteRelayAttempt(this.#services, ctx) : null;
  }

  /** Recipient validation said "unknown": counts toward the harvest defence (421, drop, block). */
  unknownRecipient(cid: string): PolicyReply | null {
    const ctx = this.#sessions.get(cid);
    if (!ctx || !this.#chains.rcpt.checks.some((c) => c.name === 'harvest')) return null;
    return noteUnknownRecipient(this.#services, ctx);
  }

  /**
   * After the final dot, before the commit: the data chain. `body` opens the
   * message as stored (read back from the spool). Returns the refusal, if any,
   * and the header fields to add (CRLF-terminated lines).
   */
  async dataEnd(cid: string, body: () => Promise<Readable>, rcpts: readonly string[] = []): Promise<{ reply: PolicyReply | null; headers: string }> {
    const ctx = this.#sessions.get(cid);
    const chain = this.#chains.data;
    if (!ctx || chain.checks.length === 0) return { reply: null, headers: '' };
    const wants = new Set(chain.checks.map((c) => c.name));
    if (wants.has('authentication') || wants.has('rspamd')) {
      let timer: NodeJS.Timeout | undefined;
      const abort = new AbortController();
      try {
        const facts = this.#readBody(ctx, body, wants, rcpts, abort.signal);
        const timeout = new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            abort.abort();
            reject(new Error(`reading the message back took over ${this.#timeoutMs} ms`));
          }, this.#timeoutMs);
        });
        ctx.tx.body = await Promise.race([facts, timeout]);
      } catch (e) {
        this.#log.warn({ ev: 'policy-error', cid, phase: 'data', err: (e as Error).message }, 'policy: cannot check the message');
        return { reply: PolicyReplies.checkFailed(), headers: '' };
      } finally {
        clearTimeout(timer);
      }
    }
    const r = await chain.run(ctx);
    if (r.verdict === 'refuse') return { reply: r.reply, headers: '' };
    return { reply: null, headers: ctx.tx.headers.join('') };
  }

  async #readBody(ctx: PolicyContext, body: () => Promise<Readable>, wants: ReadonlySet<string>, rcpts: readonly string[], signal: AbortSignal): Promise<BodyFacts> {
    const facts: BodyFacts = { auth: wants.has('authentication') ? await this.#authenticate(ctx, body, signal) : null };
    // the external scorer gets its own read of the message, streamed as the request body
    if (wants.has('rspamd')) facts.rspamd = await queryRspamd(this.#services, ctx, await body(), rcpts);
    return facts;
  }

  async #authenticate(ctx: PolicyContext, body: () => Promise<Readable>, signal: AbortSignal): Promise<AuthOutcome> {
    const source = await body();
    const through = new PassThrough();
    try {
      const [outcome] = await Promise.all([authenticateMessage(this.#services, ctx, through), pipeline(source, through, { signal })]);
      return outcome;
    } catch (e) {
      // a failed verifier stops reading: release the spool reader (and its segments) at once
      source.destroy();
      through.destroy();
      throw e;
    }
  }

  /**
   * Scan stages the policy adds to the DATA stream of this session's message
   * (policy/checks/gtube.ts), each a tiny observer like the others.
   */
  dataStages(cid: string): Stage[] {
    const ctx = this.#sessions.get(cid);
    if (!ctx || !this.#chains.data.checks.some((c) => c.name === 'gtube')) return [];
    const stage = new GtubeStage();
    ctx.tx.gtube = stage;
    return [stage];
  }

  async #run(phase: Phase, cid: string): Promise<PolicyReply | null> {
    const ctx = this.#sessions.get(cid);
    if (!ctx) return null;
    const r = await this.#chains[phase].run(ctx);
    if (r.verdict !== 'refuse') return null;
    if (r.drop && r.reply.responseCode !== 421 && phase !== 'connect') {
      // smtp-server closes the connection after a 421 only; a drop is sent as one
      return Object.assign(new Error(r.reply.message), { responseCode: 421 });
    }
    return r.reply;
  }
}
