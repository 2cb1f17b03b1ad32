/*
 * config/store.ts: the configuration store. Keeps the running configuration
 * (the JSON file `moatd --config FILE` reads) and its last revisions, and
 * replaces it only by durable, validated commits.
 *
 * What it does
 * - open(): reads FILE and validates it. When FILE is missing, empty, torn or
 *   invalid it falls back to the newest revision whose checksum and validation
 *   pass, rewrites FILE from it durably, and reports `recovery` = { recovered:
 *   true, reason, revision } for the health model. Nothing valid: it throws.
 * - commit(): validates first (an invalid document writes nothing: the
 *   validator's error, naming the bad path, is thrown as is), writes a new
 *   revision FILE.d/rev-NNNNNN.json, then replaces FILE, then prunes to the
 *   last `keep` revisions. Memory changes only after both writes succeeded.
 * - rollback(), revisions(), compare(): a rollback is a new commit of an old
 *   revision's document.
 *
 * Durable write (DurableJSONFile, a lowdb Adapter): a unique temp file
 * `NAME.tmp-PID-RANDOM` (O_EXCL; mode 0640 for FILE, which moat-panel reads
 * through moatd's group, 0600 for revisions) in the target's directory → write
 * → fsync the file → rename over the target → fsync the directory. A reader
 * (or a crash) sees the old file or the new one, never a mix. Temp files left
 * by a dead process are removed at open.
 *
 * Revision file format (checksummed in-file, no sidecar):
 *   { "sha256": HEX, "revision": N, "time": ISO-8601, "user": "...",
 *     "comment": "..." (optional), "config": { ...the document... } }
 * where HEX = SHA-256 of JSON.stringify([revision, time, user, comment ?? null, config]).
 * What is stored is the document as committed (the validator's input), not the
 * validator's output: parseConfig's output (defaults filled in, listen
 * addresses parsed) is not itself a valid input.
 *
 * What it must never do
 * - Write anything at open when FILE is fine (SD cards wear out); the only
 *   writes at open are the recovery rewrite and removing dead processes' temp
 *   files. Nothing is written between commits.
 * - Change FILE, a revision or memory when validation fails.
 * - Use lowdb's Low.update() (it changes memory before the write succeeds) or
 *   JSONFilePreset (it silently uses memory when NODE_ENV=test), or steno's
 *   writer (no fsync, fixed temp name). lowdb supplies the Adapter interface
 *   and the Low holder of the running document; the durability is here.
 * - Be used by two committing processes at once: there is no inter-process
 *   lock. One process owns it.
 *
 * Who calls it: moatd.ts opens it at start-up and daemon.ts owns it;
 * moat-panel (serial console) and `moat ctl` reach it through moatd's control
 * socket (control/server.ts: config get/set/commit/rollback/compare). The health model reads
 * `recovery` and revisions() (`ok: false` marks a damaged revision).
 */
import { createHash, randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Low, type Adapter } from 'lowdb';

/** A file handle as the durable writer needs it; node's FileHandle fits. */
export interface StoreFileHandle {
  writeFile(data: string): Promise<void>;
  sync(): Promise<void>;
  close(): Promise<void>;
}

/** The file-system calls the store makes; injectable so tests can record or fail them. */
export interface StoreFs {
  open(path: string, flags: string, mode?: number): Promise<StoreFileHandle>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  readFile(path: string, encoding: 'utf8'): Promise<string>;
  readdir(path: string): Promise<string[]>;
  mkdir(path: string, options: { recursive: boolean; mode: number }): Promise<unknown>;
}

export const nodeFs: StoreFs = {
  open: (p, f, m) => fsp.open(p, f, m),
  rename: fsp.rename,
  unlink: fsp.unlink,
  readFile: (p, e) => fsp.readFile(p, e),
  readdir: (p) => fsp.readdir(p),
  mkdir: fsp.mkdir,
};

/** Minimal structured log; a pino Logger fits. */
export interface StoreLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** FILE exists but cannot be used as JSON (empty, torn, garbage). */
export class StoreFileError extends Error {
  readonly path: string;
  constructor(path: string, message: string) {
    super(`${path}: ${message}`);
    this.name = 'StoreFileError';
    this.path = path;
  }
}

function isErrno(e: unknown, code: string): boolean {
  return typeof e === 'object' && e !== null && (e as { code?: unknown }).code === code;
}

const TEMP_MARK = '.tmp-';

/** Writes `data` to `path` durably: unique temp (0600) → write → fsync → rename → fsync dir. */
export async function writeFileDurably(fs: StoreFs, path: string, data: string, mode = 0o600): Promise<void> {
  const dir = dirname(path);
  const temp = join(dir, `${basename(path)}${TEMP_MARK}${process.pid}-${randomBytes(6).toString('hex')}`);
  const fh = await fs.open(temp, 'wx', mode);
  try {
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.rename(temp, path);
  } catch (e) {
    await fs.unlink(temp).catch(() => {});
    throw e;
  }
  const dh = await fs.open(dir, 'r');
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}

/**
 * lowdb Adapter for one JSON file, written durably. read(): null when the file
 * does not exist; throws StoreFileError when it is empty or not JSON.
 */
export class DurableJSONFile<D> implements Adapter<D> {
  readonly path: string;
  readonly fs: StoreFs;
  readonly mode: number;
  constructor(path: string, fs: StoreFs = nodeFs, mode = 0o600) {
    this.path = path;
    this.fs = fs;
    this.mode = mode;
  }
  async read(): Promise<D | null> {
    let text: string;
    try {
      text = await this.fs.readFile(this.path, 'utf8');
    } catch (e) {
      if (isErrno(e, 'ENOENT')) return null;
      throw e;
    }
    if (text.trim() === '') throw new StoreFileError(this.path, 'file is empty');
    try {
      return JSON.parse(text) as D;
    } catch (e) {
      throw new StoreFileError(this.path, `not valid JSON (torn or damaged): ${(e as Error).message}`);
    }
  }
  async write(data: D): Promise<void> {
    await writeFileDurably(this.fs, this.path, JSON.stringify(data, null, 2) + '\n', this.mode);
  }
}

export interface RevisionFile {
  sha256: string;
  revision: number;
  time: string;
  user: string;
  comment?: string;
  config: unknown;
}

export interface RevisionInfo {
  revision: number;
  time: string;
  user: string;
  comment?: string;
  /** false: unreadable or its checksum does not match; it is never loaded. */
  ok: boolean;
}

export type Recovery = { recovered: false } | { recovered: true; reason: string; revision: number };

export interface ConfigStoreOptions<T> {
  /** Returns the validated configuration or throws an error that names the bad path. */
  validate: (doc: unknown) => T;
  /** Revisions kept; default 20, at least 1. */
  keep?: number;
  log?: StoreLog;
  fs?: StoreFs;
  now?: () => Date;
}

export interface CommitMeta {
  user: string;
  comment?: string;
}

function revisionChecksum(r: Omit<RevisionFile, 'sha256'>): string {
  return createHash('sha256')
    .update(JSON.stringify([r.revision, r.time, r.user, r.comment ?? null, r.config]))
    .digest('hex');
}

const REV_NAME = /^rev-(\d{6,})\.json$/;
const revName = (n: number) => `rev-${String(n).padStart(6, '0')}.json`;

function pidAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return !isErrno(e, 'ESRCH');
  }
}

/** Temp files in `dir` left by dead writers of `prefix*`: ours (NAME.tmp-PID-…) and steno's (.NAME.tmp). */
async function removeStaleTemps(fs: StoreFs, dir: string, matches: (name: string) => boolean, log?: StoreLog): Promise<void> {
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return;
    throw e;
  }
  for (const name of names) {
    const i = name.indexOf(TEMP_MARK);
    let stale = false;
    if (i > 0 && matches(name.slice(0, i))) {
      const pid = Number(/^(\d+)-/.exec(name.slice(i + TEMP_MARK.length))?.[1]);
      stale = !Number.isInteger(pid) || !pidAlive(pid);
    } else if (name.startsWith('.') && name.endsWith('.tmp') && matches(name.slice(1, -4))) stale = true;
    if (!stale) continue;
    await fs.unlink(join(dir, name)).catch((e) => {
      if (!isErrno(e, 'ENOENT')) throw e;
    });
    log?.warn({ ev: 'config-stale-temp', file: join(dir, name) }, 'removed a temp file left by an interrupted write');
  }
}

type Scalar = string | number | boolean | null;

function flatten(v: unknown, path: string, out: Map<string, Scalar | '[]' | '{}'>): void {
  if (Array.isArray(v)) {
    if (v.length === 0) out.set(path, '[]');
    v.forEach((x, i) => flatten(x, `${path}[${i}]`, out));
  } else if (v !== null && typeof v === 'object') {
    const entries = Object.entries(v);
    if (entries.length === 0) out.set(path, '{}');
    for (const [k, x] of entries) flatten(x, path ? `${path}.${k}` : k, out);
  } else out.set(path || '(top level)', v as Scalar);
}

const show = (v: unknown) => (v === '[]' || v === '{}' ? v : JSON.stringify(v));

/**
 * A line diff of two documents by JSON path: `~ path: old → new`, `+ path: new`,
 * `- path: old`, sorted by path. Empty when they are equal.
 */
export function diffDocuments(a: unknown, b: unknown): string[] {
  const fa = new Map<string, Scalar | '[]' | '{}'>();
  const fb = new Map<string, Scalar | '[]' | '{}'>();
  flatten(a, '', fa);
  flatten(b, '', fb);
  const paths = [...new Set([...fa.keys(), ...fb.keys()])].sort();
  const lines: string[] = [];
  for (const p of paths) {
    const inA = fa.has(p);
    const inB = fb.has(p);
    if (inA && inB) {
      if (fa.get(p) !== fb.get(p)) lines.push(`~ ${p}: ${show(fa.get(p))} → ${show(fb.get(p))}`);
    } else if (inB) lines.push(`+ ${p}: ${show(fb.get(p))}`);
    else lines.push(`- ${p}: ${show(fa.get(p))}`);
  }
  return lines;
}

export class ConfigStore<T, D = unknown> {
  readonly path: string;
  readonly dir: string;
  /** How open() found the running file; the health model shows a fault when recovered. */
  readonly recovery: Recovery;
  private readonly opts: Required<Pick<ConfigStoreOptions<T>, 'validate' | 'keep' | 'fs' | 'now'>> & { log?: StoreLog };
  private readonly low: Low<D | null>;
  private current: T;
  private running: number | null;
  private index: RevisionInfo[];
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    path: string,
    opts: ConfigStore<T, D>['opts'],
    low: Low<D | null>,
    current: T,
    running: number | null,
    index: RevisionInfo[],
    recovery: Recovery,
  ) {
    this.path = path;
    this.dir = `${path}.d`;
    this.opts = opts;
    this.low = low;
    this.current = current;
    this.running = running;
    this.index = index;
    this.recovery = recovery;
  }

  static async open<T, D = unknown>(path: string, options: ConfigStoreOptions<T>): Promise<ConfigStore<T, D>> {
    const fs = options.fs ?? nodeFs;
    const opts = {
      validate: options.validate,
      keep: Math.max(1, Math.floor(options.keep ?? 20)),
      fs,
      now: options.now ?? (() => new Date()),
      log: options.log,
    };
    const dir = `${path}.d`;
    const name = basename(path);
    await removeStaleTemps(fs, dirname(path), (n) => n === name, opts.log);
    await removeStaleTemps(fs, dir, (n) => REV_NAME.test(n), opts.log);

    const revs = await loadRevisions(fs, dir);
    const index = revs.map((r) => r.info);

    // FILE is group-readable (0640): moat-panel, in moatd's group on the appliance, reads console.* and panel.* from it
    const low = new Low<D | null>(new DurableJSONFile<D | null>(path, fs, 0o640), null);
    let reason: string;
    try {
      await low.read();
      if (low.data === null) reason = `${path} is missing`;
      else {
        const current = opts.validate(low.data);
        const text = JSON.stringify(low.data);
        const running = revs.findLast((r) => r.file && JSON.stringify(r.file.config) === text)?.info.revision ?? null;
        return new ConfigStore<T, D>(path, opts, low, current, running, index, { recovered: false });
      }
    } catch (e) {
      // Unusable content is recovered from; an I/O error (EACCES, EIO) is not ours to paper over.
      if (!(e instanceof StoreFileError) && low.data === null) throw e;
      reason = e instanceof StoreFileError ? e.message : `${path}: ${(e as Error).message}`;
      low.data = null;
    }

    // Recovery: newest revision with a good checksum that validates.
    const skipped: string[] = [];
    for (let i = revs.length - 1; i >= 0; i--) {
      const r = revs[i]!;
      if (!r.file) {
        skipped.push(`revision ${r.info.revision}: ${r.problem}`);
        continue;
      }
      let current: T;
      try {
        current = opts.validate(r.file.config);
      } catch (e) {
        skipped.push(`revision ${r.info.revision}: ${(e as Error).message}`);
        continue;
      }
      const doc = r.file.config as D;
      await low.adapter.write(doc);
      low.data = doc;
      const full = skipped.length ? `${reason}; skipped ${skipped.join('; ')}` : reason;
      opts.log?.warn({ ev: 'config-recovered', file: path, revision: r.info.revision, reason: full }, 'running configuration restored from a revision');
      return new ConfigStore<T, D>(path, opts, low, current, r.info.revision, index, {
        recovered: true,
        reason: full,
        revision: r.info.revision,
      });
    }
    const why = skipped.length ? `; no usable revision (${skipped.join('; ')})` : `; no revisions in ${dir}`;
    throw new Error(`no valid configuration: ${reason}${why}`);
  }

  /** The validated running configuration. */
  get config(): T {
    return this.current;
  }

  /** The running document as stored in FILE (a copy). */
  get document(): D {
    return structuredClone(this.low.data) as D;
  }

  /** The revision FILE holds, or null when it matches none (never committed through the store). */
  get runningRevision(): number | null {
    return this.running;
  }

  /** Revisions kept, oldest first. */
  revisions(): RevisionInfo[] {
    return this.index.map((r) => ({ ...r }));
  }

  /** Validates `next`, writes it as a new revision and as FILE. Returns the revision number. */
  commit(next: D, meta: CommitMeta): Promise<number> {
    return this.serial(() => this.doCommit(next, meta));
  }

  /**
   * Commits an earlier revision again, as a new revision. A number is a
   * revision number; `{ back: k }` counts k commits back from the newest
   * (`{ back: 1 }` undoes the last commit, like a router's `rollback 1`).
   */
  rollback(target: number | { back: number }, meta: CommitMeta): Promise<number> {
    return this.serial(async () => {
      const n = this.resolve(target);
      const file = await this.readRevision(n);
      return this.doCommit(file.config as D, { user: meta.user, comment: meta.comment ?? `rollback to revision ${n}` });
    });
  }

  /** The document of a kept revision (a number, or `{ back: k }` as for rollback), checked against its checksum. */
  async revisionDocument(target: number | { back: number }): Promise<{ revision: number; config: D }> {
    const n = this.resolve(target);
    return { revision: n, config: (await this.readRevision(n)).config as D };
  }

  /** Line diff from revision a to revision b ('running': the running document). */
  async compare(a: number | 'running', b: number | 'running'): Promise<string[]> {
    const doc = async (x: number | 'running') => (x === 'running' ? this.low.data : (await this.readRevision(x)).config);
    return diffDocuments(await doc(a), await doc(b));
  }

  private serial<R>(fn: () => Promise<R>): Promise<R> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => {});
    return run;
  }

  private resolve(target: number | { back: number }): number {
    if (typeof target === 'number') {
      if (!this.index.some((r) => r.revision === target)) throw new Error(`no revision ${target} (kept: ${this.index.map((r) => r.revision).join(', ') || 'none'})`);
      return target;
    }
    const k = target.back;
    const r = this.index[this.index.length - 1 - k];
    if (!Number.isInteger(k) || k < 0 || !r) throw new Error(`cannot roll back ${k}: ${this.index.length} revisions kept`);
    return r.revision;
  }

  private async readRevision(n: number): Promise<RevisionFile> {
    const r = await readRevisionFile(this.opts.fs, this.dir, n);
    if (!r.file) throw new Error(`revision ${n} is damaged: ${r.problem}`);
    return r.file;
  }

  private async doCommit(next: D, meta: CommitMeta): Promise<number> {
    const text = JSON.stringify(next);
    if (text === undefined) throw new Error('configuration: expected a JSON document');
    const doc = JSON.parse(text) as D; // a snapshot: later changes by the caller do not leak in
    const validated = this.opts.validate(doc);
    const fs = this.opts.fs;

    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    const names = await fs.readdir(this.dir);
    const highest = Math.max(0, ...names.map((n) => Number(REV_NAME.exec(n)?.[1] ?? 0)), ...this.index.map((r) => r.revision));
    const revision = highest + 1;
    const body: Omit<RevisionFile, 'sha256'> = {
      revision,
      time: this.opts.now().toISOString(),
      user: meta.user,
      ...(meta.comment !== undefined ? { comment: meta.comment } : {}),
      config: doc,
    };
    const file: RevisionFile = { sha256: revisionChecksum(body), ...body };
    const revPath = join(this.dir, revName(revision));
    await new DurableJSONFile<RevisionFile>(revPath, fs).write(file);
    try {
      await this.low.adapter.write(doc);
    } catch (e) {
      await fs.unlink(revPath).catch(() => {}); // best effort: a revision that never ran
      throw e;
    }
    // Both writes are on stable storage: only now does memory change.
    this.low.data = doc;
    this.current = validated;
    this.running = revision;
    this.index.push({ revision, time: body.time, user: body.user, ...(meta.comment !== undefined ? { comment: meta.comment } : {}), ok: true });
    this.opts.log?.info({ ev: 'config-commit', revision, user: meta.user }, 'configuration committed');
    await this.prune(names);
    return revision;
  }

  private async prune(names: string[]): Promise<void> {
    const fs = this.opts.fs;
    const all = [...new Set([...names.map((n) => Number(REV_NAME.exec(n)?.[1] ?? 0)).filter((n) => n > 0), ...this.index.map((r) => r.revision)])].sort((a, b) => a - b);
    const drop = all.slice(0, Math.max(0, all.length - this.opts.keep));
    if (drop.length === 0) return;
    for (const n of drop) {
      await fs.unlink(join(this.dir, revName(n))).catch((e) => {
        if (!isErrno(e, 'ENOENT')) throw e;
      });
    }
    const dropped = new Set(drop);
    this.index = this.index.filter((r) => !dropped.has(r.revision));
    const dh = await fs.open(this.dir, 'r');
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
  }
}

interface LoadedRevision {
  info: RevisionInfo;
  file: RevisionFile | null;
  problem?: string;
}

async function readRevisionFile(fs: StoreFs, dir: string, n: number): Promise<LoadedRevision> {
  const fallback: RevisionInfo = { revision: n, time: '', user: '', ok: false };
  let raw: RevisionFile | null;
  try {
    raw = await new DurableJSONFile<RevisionFile>(join(dir, revName(n)), fs).read();
  } catch (e) {
    return { info: fallback, file: null, problem: e instanceof StoreFileError ? 'not valid JSON (torn or damaged)' : (e as Error).message };
  }
  if (raw === null) return { info: fallback, file: null, problem: 'missing' };
  const { sha256, ...body } = (raw ?? {}) as RevisionFile;
  const info: RevisionInfo = {
    revision: n,
    time: typeof body.time === 'string' ? body.time : '',
    user: typeof body.user === 'string' ? body.user : '',
    ...(typeof body.comment === 'string' ? { comment: body.comment } : {}),
    ok: false,
  };
  if (typeof raw !== 'object' || body.revision !== n || typeof sha256 !== 'string' || !('config' in body)) return { info, file: null, problem: 'not a revision file' };
  if (revisionChecksum(body) !== sha256) return { info, file: null, problem: 'checksum mismatch' };
  return { info: { ...info, ok: true }, file: raw };
}

/** All revisions in `dir`, oldest first; damaged ones with file null. */
async function loadRevisions(fs: StoreFs, dir: string): Promise<LoadedRevision[]> {
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return [];
    throw e;
  }
  const numbers = names
    .map((n) => Number(REV_NAME.exec(n)?.[1] ?? 0))
    .filter((n) => n > 0)
    .sort((a, b) => a - b);
  const out: LoadedRevision[] = [];
  for (const n of numbers) out.push(await readRevisionFile(fs, dir, n));
  return out;
}
