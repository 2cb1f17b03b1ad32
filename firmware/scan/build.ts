/*
 * scan/build.ts: assembles the scan chain for each message from the
 * configuration: guard → size → body rules (raw) → MIME walker (attachment
 * policy, header rules, body rules on decoded parts) → clamd.
 *
 * ScanService holds what lives longer than a message (compiled header rules,
 * clamd settings) and builds a fresh set of stages per message, each with its
 * own small state. Must never: share per-message state between messages.
 * Called by smtp/inbound.ts (inbound mail) and, with its issue, the outbound
 * listener.
 */
import type { Config } from '../config/schema.ts';
import type { Logger } from '../log/logger.ts';
import type { Stage } from './pipeline.ts';
import { GuardStage } from './guard.ts';
import { SizeStage } from './size.ts';
import { MimeWalker, type MimeListener, type MimeLimits } from './mime.ts';
import { AttachmentCheck } from './attachments.ts';
import { HeaderRules, type HeaderRule } from './rules.ts';
import { ClamdStage } from './clamd.ts';
import { BodyRules, type BodyRule } from './body-rules.ts';

export type MessageContext = { cid: string; ip: string };

export class ScanService {
  readonly #config: Config;
  readonly #log: Logger;
  readonly #limits: MimeLimits;
  readonly #headerRules: readonly HeaderRule[];
  readonly #bodyRules: readonly BodyRule[];

  constructor(config: Config, log: Logger) {
    this.#config = config;
    this.#log = log;
    const s = config.scan;
    this.#limits = {
      maxHeaderBytes: s.headers.maxBytes,
      maxHeaderFields: s.headers.maxFields,
      maxPartHeaderBytes: s.mime.maxPartHeaderBytes,
      maxParts: s.mime.maxParts,
      maxDepth: s.mime.maxDepth,
    };
    this.#headerRules = s.rules.flatMap((r) =>
      r.header ? [{ name: r.name, field: r.header.field, pattern: new RegExp(r.header.pattern, r.header.ignoreCase ? 'iu' : 'u'), action: r.action }] : [],
    );
    this.#bodyRules = s.rules.flatMap((r) => (r.body !== undefined ? [{ name: r.name, literal: Buffer.from(r.body, 'utf8'), action: r.action }] : []));
  }

  /** The stages for one message, in order. */
  stages(ctx: MessageContext): Stage[] {
    const c = this.#config;
    const stages: Stage[] = [];
    const guard = new GuardStage(c.inbound.data);
    if (guard.active) stages.push(guard);
    stages.push(new SizeStage(c.inbound.maxMessageSize));
    const listeners: MimeListener[] = [new AttachmentCheck(c.scan.attachments)];
    if (this.#headerRules.length) listeners.push(new HeaderRules(this.#headerRules));
    if (this.#bodyRules.length) {
      const body = new BodyRules(this.#bodyRules);
      stages.push(body); // the raw stream
      listeners.push(body); // decoded parts
    }
    stages.push(new MimeWalker(listeners, this.#limits));
    const cd = c.scan.clamd;
    if (cd)
      stages.push(
        new ClamdStage(cd, (reason) => this.#log.warn({ ev: 'scan-skipped', ...ctx, stage: 'clamd', reason }, 'clamd failed; message accepted unscanned (scan.clamd.onFailure accept)')),
      );
    return stages;
  }
}
