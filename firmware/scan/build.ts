/*
 * scan/build.ts: assembles the scan chain for each message from the
 * configuration: guard → size → body rules and signatures on the raw stream →
 * MIME walker (attachment policy, header rules, body rules and signatures on
 * decoded parts, attachment digests) → clamd.
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
import { SignatureScan } from './signature-scan.ts';
import { compileSignatures, loadSignatureFiles, EICAR, type SignatureDb } from './signatures/index.ts';

export type MessageContext = { cid: string; ip: string };

/** Reads and compiles the configured signature files (and EICAR); null when there are none. */
export async function loadSignatures(config: Config, log: Logger): Promise<SignatureDb | null> {
  const sc = config.scan.signatures;
  if (!sc.files.length && !sc.eicar) return null;
  // the loader starts every set with the built-in EICAR signature
  const set = sc.files.length ? await loadSignatureFiles([...sc.files]) : { body: [EICAR], hashes: [], warnings: [] };
  if (!sc.eicar) set.body = set.body.filter((b) => b !== EICAR);
  const t0 = performance.now();
  const db = await compileSignatures(set);
  const warnings = [...set.warnings, ...db.warnings];
  log.info(
    { ev: 'signatures', body: db.bodyCount, hashes: db.hashCount, files: sc.files.length, ms: Math.round(performance.now() - t0), ...(warnings.length ? { warnings: warnings.slice(0, 20) } : {}) },
    'signatures loaded',
  );
  return db;
}

export class ScanService {
  readonly #config: Config;
  readonly #log: Logger;
  readonly #limits: MimeLimits;
  readonly #headerRules: readonly HeaderRule[];
  readonly #bodyRules: readonly BodyRule[];
  #db: SignatureDb | null;

  /** Loads the signatures first; throws (SignatureFileError) when a configured file is unusable. */
  static async create(config: Config, log: Logger): Promise<ScanService> {
    return new ScanService(config, log, await loadSignatures(config, log));
  }

  constructor(config: Config, log: Logger, db: SignatureDb | null) {
    this.#config = config;
    this.#log = log;
    this.#db = db;
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

  /** The compiled signature database, shared with the next configuration's service when unchanged. */
  get database(): SignatureDb | null {
    return this.#db;
  }

  /** What the signature scanner holds, or null when it is off. */
  get signatures(): { body: number; hashes: number } | null {
    return this.#db ? { body: this.#db.bodyCount, hashes: this.#db.hashCount } : null;
  }

  /**
   * Reads the signature files again and swaps the database in; messages in
   * flight finish with the one they started with. On error the old one stays.
   */
  async reloadSignatures(): Promise<void> {
    this.#db = await loadSignatures(this.#config, this.#log);
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
    if (this.#db) {
      const sig = new SignatureScan(this.#db);
      stages.push(sig); // the raw stream
      listeners.push(sig); // decoded parts and attachment digests
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
