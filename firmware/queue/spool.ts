/*
 * queue/spool.ts: the durable queue of accepted mail.
 *
 * State table (what a message can be, and what makes it so):
 *
 *   receiving  chunk records of its body are appended to the head segment as
 *              they stream in (interleaved with other sessions' chunks)
 *   queued     its commit record (the envelope) is written and the segment
 *              flushed: only now may the SMTP layer answer 250
 *   delivered / returned
 *              a state record marks it done; once no queued message has data
 *              in a sealed segment, the segment file is deleted
 *
 * Bodies live in append-only segment files (spool/seg-NNNNNNNN.log), written
 * in order and flushed once per group of concurrent commits: one flush makes
 * every message committed since the last one durable, which is what keeps
 * the rate up on an SD card. Per-recipient delivery state lives apart in
 * spool/state.log: small records, flushed lazily, compacted by rewrite. A
 * crash may lose a state record, which can only cause a duplicate delivery,
 * never a loss. Recovery needs nothing but the files.
 *
 * Must never answer for a message before its flush, never hold a body in
 * memory, never parse mail text (the envelope comes typed from the SMTP edge).
 * Called by smtp/ (begin/commit), queue/manager.ts (state, readers) and moatd.
 */
import { constants as fsc, promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { LogFile, scanFile, type Extent } from './log-file.ts';
import { IdSource, RecordType, type QueueId } from './records.ts';
import { SyncDevice } from './sync-device.ts';

export type RcptStatus = 'pending' | 'delivered' | 'failed';

export type Envelope = {
  from: string; // '' for the null sender
  to: string[];
  arrivedAt: number;
  client: { address: string; helo: string; tls: boolean };
  /** ESMTP parameters worth carrying to the next hop. */
  bodyType?: '7BIT' | '8BITMIME';
  envid?: string;
  /** Set on messages moat made itself (DSNs). */
  origin?: 'local';
  /**
   * Header fields moat added once the whole message had been checked (tags,
   * Authentication-Results): CRLF-terminated lines, sent before the stored
   * bytes. Kept in the commit record so the body is written once.
   */
  headers?: string;
};

export type QueuedMessage = {
  id: QueueId;
  envelope: Envelope;
  size: number;
  /** Per recipient, in envelope order. */
  rcpts: Array<{ status: RcptStatus; reply?: string }>;
  attempts: number;
  nextAttemptAt: number;
  extents: Extent[];
  segments: Set<number>;
  /** Put on hold by the administrator: not delivered until released (kept across restarts). */
  held?: boolean;
  /** Its sender has had the one "delayed" DSN (outbound.delayWarningAfterMs). */
  warned?: boolean;
};

type StateChange = { done?: true; rcpts?: Array<[number, RcptStatus, string?]>; attempts?: number; next?: number; held?: boolean; warned?: boolean };

export class SpoolError extends Error {
  readonly code: 'full' | 'io';
  constructor(code: 'full' | 'io', message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SpoolError';
    this.code = code;
  }
}

export type SpoolOptions = {
  dataDir: string;
  segmentBytes: number;
  minFreeBytes: number;
  syncDelayMs: number;
  log: Logger;
  now?: () => number;
  /** Flushes of one segment allowed at once (1: strict group commit). */
  syncsInFlight?: number;
  stateCompactBytes?: number;
  stateSyncIntervalMs?: number;
  /** How often to look for sealed segments kept alive by a little deferred mail. */
  relocateIntervalMs?: number;
  /** A sealed segment this old whose queued bytes are below relocateRatio of it is emptied. */
  relocateAfterMs?: number;
  relocateRatio?: number;
};

const SEGMENT_RE = /^seg-(\d{8})\.log$/;
const segName = (seq: number) => `seg-${String(seq).padStart(8, '0')}.log`;
/** Unflushed bytes a message may have outstanding before its sender is paused. */
const MESSAGE_HIGH_WATER = 512 * 1024;
const READ_BLOCK = 256 * 1024;

type Segment = LogFile & {
  refs: number;
  sealed: boolean;
  sealedDurable?: Promise<void>;
  /** When it was sealed (or found at start-up), for relocation. */
  sealedAt?: number;
  /** Readers open on it: it is not deleted under them. */
  readers?: number;
  dropWhenUnread?: boolean;
};

export class Spool {
  readonly dir: string;
  readonly device: SyncDevice;
  private readonly opts: Required<Omit<SpoolOptions, 'now'>> & { now: () => number };
  private readonly log: Logger;
  private readonly ids: IdSource;
  private segments = new Map<number, Segment>();
  private head!: Segment;
  private next: Promise<Segment> | null = null;
  private nextReady: Segment | null = null;
  private maxSeq = 0;
  private state!: LogFile;
  private stateDirty = false;
  private stateTimer: NodeJS.Timeout | null = null;
  private compacting: StateChange[] | null = null;
  private compactQueue: Array<{ id: QueueId; change: StateChange }> = [];
  private freeCache = { at: 0, bytes: Number.POSITIVE_INFINITY };
  readonly messages = new Map<QueueId, QueuedMessage>();
  /** Finished messages whose bytes are still in a segment: compaction must keep their "done". */
  private tombstones = new Map<QueueId, Set<number>>();
  private closed = false;
  private relocating = false;
  private relocateTimer: NodeJS.Timeout | null = null;

  private constructor(opts: SpoolOptions) {
    this.opts = {
      syncsInFlight: 1,
      stateCompactBytes: 8 * 1024 * 1024,
      stateSyncIntervalMs: 1000,
      relocateIntervalMs: 60_000,
      relocateAfterMs: 10 * 60_000,
      relocateRatio: 0.25,
      now: Date.now,
      ...opts,
    };
    this.dir = join(opts.dataDir, 'spool');
    this.log = opts.log;
    this.device = new SyncDevice(opts.syncDelayMs);
    this.ids = new IdSource(this.opts.now);
  }

  /** Opens the spool, recovering every queued message from disk. */
  static async open(opts: SpoolOptions): Promise<Spool> {
    const s = new Spool(opts);
    await s.recover();
    return s;
  }

  // ---- recovery -------------------------------------------------------

  private async recover(): Promise<void> {
    await fsp.mkdir(this.dir, { recursive: true, mode: 0o750 });
    const names = (await fsp.readdir(this.dir)).filter((n) => SEGMENT_RE.test(n)).sort();
    const chunks = new Map<QueueId, Extent[]>();
    let skipped = 0;
    for (const name of names) {
      const seq = Number(SEGMENT_RE.exec(name)![1]);
      this.maxSeq = Math.max(this.maxSeq, seq);
      const path = join(this.dir, name);
      const fh = await fsp.open(path, 'r');
      const { size } = await fh.stat();
      const seg = Object.assign(new LogFile(seq, path, fh, size, this.device), { refs: 0, sealed: true }) as Segment;
      seg.sealedDurable = Promise.resolve();
      seg.sealedAt = this.opts.now();
      this.segments.set(seq, seg);
      await scanFile(
        fh,
        size,
        ({ header, offset, payload }) => {
          this.ids.observe(header.id);
          if (header.type === RecordType.chunk) {
            let list = chunks.get(header.id);
            if (!list) chunks.set(header.id, (list = []));
            list.push({ file: seq, offset, length: header.length });
          } else if (header.type === RecordType.commit && payload) {
            const env = parseEnvelope(payload);
            const extents = chunks.get(header.id) ?? [];
            chunks.delete(header.id);
            const size = extents.reduce((a, e) => a + e.length, 0);
            if (!env || env.size !== size) {
              this.log.error({ queueId: header.id, segment: name }, 'spool: commit record does not match its data; message kept in the segment, not queued');
              return;
            }
            this.messages.set(header.id, {
              id: header.id,
              envelope: env.envelope,
              size,
              rcpts: env.envelope.to.map(() => ({ status: 'pending' as RcptStatus })),
              attempts: 0,
              nextAttemptAt: 0,
              extents,
              // the commit record's segment counts too: deleting it would lose the message
              segments: new Set([...extents.map((e) => e.file), seq]),
            });
          }
        },
        {
          keepPayload: (t) => t === RecordType.commit,
          onSkip: (offset, bytes) => {
            skipped += bytes;
            this.log.warn({ segment: name, offset, bytes }, 'spool: skipped bytes that hold no valid record (torn write or damage)');
          },
        },
      );
    }
    // the state log: delivery progress of queued messages
    const statePath = join(this.dir, 'state.log');
    await fsp.rm(statePath + '.tmp', { force: true });
    let stateFh: fsp.FileHandle;
    try {
      stateFh = await fsp.open(statePath, fsc.O_RDWR);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      stateFh = await fsp.open(statePath, fsc.O_RDWR | fsc.O_CREAT | fsc.O_EXCL, 0o640);
      await this.device.syncDir(this.dir);
    }
    const stateSize = (await stateFh.stat()).size;
    const stateEnd = await scanFile(
      stateFh,
      stateSize,
      ({ header, payload }) => {
        // ids named in the state log are never handed out again, even if the clock stepped back
        this.ids.observe(header.id);
        const m = this.messages.get(header.id);
        if (m && payload) applyState(m, parseState(payload));
      },
      { keepPayload: (t) => t === RecordType.state },
    );
    if (stateEnd < stateSize) await stateFh.truncate(stateEnd);
    this.state = new LogFile(0, statePath, stateFh, stateEnd, this.device);
    for (const [id, m] of this.messages) {
      if (m.rcpts.every((r) => r.status !== 'pending')) {
        this.messages.delete(id);
        this.tombstones.set(id, m.segments);
      }
    }
    for (const m of this.messages.values()) for (const f of m.segments) this.segments.get(f)!.refs++;
    for (const seg of [...this.segments.values()]) if (seg.refs === 0) await this.dropSegment(seg);
    this.head = await this.createSegment();
    if (this.messages.size > 0 || skipped > 0 || chunks.size > 0)
      this.log.info({ queued: this.messages.size, segments: this.segments.size, skippedBytes: skipped, incomplete: chunks.size }, 'spool: recovered');
    await this.compactState();
    this.stateTimer = setInterval(() => void this.flushState(), this.opts.stateSyncIntervalMs);
    this.stateTimer.unref();
    this.relocateTimer = setInterval(() => void this.relocateSparse(), this.opts.relocateIntervalMs);
    this.relocateTimer.unref();
  }

  // ---- segments ---------------------------------------------------------

  private async createSegment(): Promise<Segment> {
    const seq = ++this.maxSeq;
    const path = join(this.dir, segName(seq));
    const fh = await fsp.open(path, fsc.O_RDWR | fsc.O_CREAT | fsc.O_EXCL, 0o640);
    try {
      await this.device.syncDir(this.dir);
    } catch (e) {
      await fh.close();
      await fsp.rm(path, { force: true });
      throw e;
    }
    const seg = Object.assign(new LogFile(seq, path, fh, 0, this.device, this.opts.syncsInFlight), { refs: 0, sealed: false }) as Segment;
    this.segments.set(seq, seg);
    return seg;
  }

  /** The segment to append to; rotates when the head is full and its successor is ready. */
  private current(): Segment {
    const h = this.head;
    if (h.reserved >= this.opts.segmentBytes / 2 && !this.next && !this.nextReady) {
      this.next = this.createSegment().then(
        (s) => {
          this.nextReady = s;
          this.next = null;
          return s;
        },
        (e: Error) => {
          this.log.error({ err: e.message }, 'spool: cannot create the next segment');
          this.next = null;
          throw e;
        },
      );
      this.next.catch(() => undefined);
    }
    if (h.reserved >= this.opts.segmentBytes && this.nextReady) {
      this.head = this.nextReady;
      this.nextReady = null;
      this.seal(h);
    }
    return this.head;
  }

  private seal(seg: Segment): void {
    seg.sealed = true;
    seg.sealedAt = this.opts.now();
    seg.sealedDurable = seg.idle().then(() => seg.sync());
    seg.sealedDurable.then(
      () => {
        if (seg.refs === 0) void this.dropSegment(seg);
      },
      (e: Error) => this.log.error({ segment: seg.path, err: e.message }, 'spool: flushing a sealed segment failed'),
    );
  }

  private async dropSegment(seg: Segment): Promise<void> {
    if (!this.segments.has(seg.seq)) return;
    if (seg.readers) {
      seg.dropWhenUnread = true;
      return;
    }
    this.segments.delete(seg.seq);
    for (const [id, segs] of this.tombstones) {
      segs.delete(seg.seq);
      if (segs.size === 0) this.tombstones.delete(id);
    }
    await seg.close().catch(() => undefined);
    await fsp.rm(seg.path, { force: true });
  }

  private release(m: QueuedMessage | { segments: Set<number> }): void {
    for (const f of m.segments) {
      const seg = this.segments.get(f);
      if (!seg) continue;
      seg.refs--;
      if (seg.refs === 0 && seg.sealed) void seg.sealedDurable!.then(() => (seg.refs === 0 ? this.dropSegment(seg) : undefined), () => undefined);
    }
  }

  // ---- intake -----------------------------------------------------------

  /** Free bytes on the spool's file system (cached for a second). */
  async freeBytes(): Promise<number> {
    const now = Date.now();
    if (now - this.freeCache.at < 1000) return this.freeCache.bytes;
    const st = await fsp.statfs(this.dir);
    this.freeCache = { at: now, bytes: st.bavail * st.bsize };
    return this.freeCache.bytes;
  }

  /** True when a message of `bytes` (as announced, or 0) may be taken in. */
  async hasRoom(bytes = 0): Promise<boolean> {
    if (this.closed) return false;
    return (await this.freeBytes()) >= this.opts.minFreeBytes + bytes;
  }

  /** Starts receiving a message. */
  begin(): Incoming {
    if (this.closed) throw new SpoolError('io', 'spool is closed');
    return new Incoming(this, this.ids.next());
  }

  /** @internal used by Incoming */
  appendChunk(inc: Incoming, parts: Buffer[]): Promise<void> {
    const seg = this.current();
    const { extent, written } = seg.append(RecordType.chunk, inc.id, parts);
    inc.extents.push(extent);
    if (!inc.segments.has(seg.seq)) {
      inc.segments.add(seg.seq);
      seg.refs++;
    }
    return written;
  }

  /** @internal used by Incoming: writes the commit record and flushes. */
  async commitIncoming(inc: Incoming, envelope: Envelope): Promise<QueuedMessage> {
    const payload = Buffer.from(JSON.stringify({ v: 1, size: inc.bytes, envelope }));
    const seg = this.current();
    if (!inc.segments.has(seg.seq)) {
      inc.segments.add(seg.seq);
      seg.refs++;
    }
    await seg.append(RecordType.commit, inc.id, [payload]).written;
    await Promise.all(
      [...inc.segments].filter((f) => f !== seg.seq).map((f) => this.segments.get(f)?.sealedDurable ?? Promise.resolve()),
    );
    await seg.sync();
    const m: QueuedMessage = {
      id: inc.id,
      envelope,
      size: inc.bytes,
      rcpts: envelope.to.map(() => ({ status: 'pending' as RcptStatus })),
      attempts: 0,
      nextAttemptAt: 0,
      extents: inc.extents,
      segments: inc.segments,
    };
    this.messages.set(m.id, m);
    return m;
  }

  /** @internal used by Incoming */
  abortIncoming(inc: Incoming): void {
    this.release(inc);
  }

  // ---- delivery side ----------------------------------------------------

  /** A stream of the stored message, read from disk in blocks. */
  reader(m: QueuedMessage): Readable {
    let i = 0;
    let within = 0;
    const spool = this;
    const held = [...m.segments].map((f) => this.segments.get(f)).filter((x): x is Segment => x !== undefined);
    for (const seg of held) seg.readers = (seg.readers ?? 0) + 1;
    let released = false;
    const unhold = () => {
      if (released) return;
      released = true;
      for (const seg of held) {
        seg.readers!--;
        if (seg.readers === 0 && seg.dropWhenUnread) void this.dropSegment(seg);
      }
    };
    let prefix = m.envelope.headers ? Buffer.from(m.envelope.headers, 'latin1') : null;
    return new Readable({
      highWaterMark: READ_BLOCK,
      destroy(err, cb) {
        unhold();
        cb(err);
      },
      async read() {
        try {
          if (prefix) {
            const p = prefix;
            prefix = null;
            this.push(p);
            return;
          }
          while (i < m.extents.length && within >= m.extents[i]!.length) {
            i++;
            within = 0;
          }
          const e = m.extents[i];
          if (!e) {
            this.push(null);
            unhold();
            return;
          }
          const seg = spool.segments.get(e.file);
          if (!seg) throw new SpoolError('io', `segment ${e.file} of message ${m.id} is gone`);
          const n = Math.min(READ_BLOCK, e.length - within);
          const buf = await seg.read(e.offset + within, n);
          within += n;
          this.push(buf);
        } catch (err) {
          this.destroy(err as Error);
        }
      },
    });
  }

  /** Records delivery progress; not flushed at once (a lost record means a duplicate, not a loss). */
  update(m: QueuedMessage, change: StateChange): void {
    applyState(m, change);
    const done = m.rcpts.every((r) => r.status !== 'pending');
    if (done) change = { ...change, done: true };
    this.writeState(m.id, change);
    if (done) {
      this.messages.delete(m.id);
      this.tombstones.set(m.id, new Set(m.segments));
      this.release(m);
    }
  }

  private writeState(id: QueueId, change: StateChange): void {
    if (this.compacting) {
      this.compactQueue.push({ id, change });
      return;
    }
    const { written } = this.state.append(RecordType.state, id, [Buffer.from(JSON.stringify(change))]);
    this.stateDirty = true;
    written.catch((e: Error) => this.log.error({ err: e.message }, 'spool: writing the state log failed'));
    if (this.state.reserved > this.opts.stateCompactBytes) void this.compactState();
  }

  /** Flushes the state log now (an administrator's hold must not wait for the lazy flush). */
  async syncState(): Promise<void> {
    this.stateDirty = true;
    await this.flushState();
  }

  private async flushState(): Promise<void> {
    if (!this.stateDirty || this.compacting) return;
    this.stateDirty = false;
    try {
      await this.state.idle();
      await this.state.sync();
    } catch (e) {
      this.log.error({ err: (e as Error).message }, 'spool: flushing the state log failed');
    }
  }

  /** Rewrites the state log with one record per queued message that has progress. */
  private async compactState(): Promise<void> {
    if (this.compacting) return;
    this.compacting = [];
    const tmpPath = this.state.path + '.tmp';
    try {
      const fh = await fsp.open(tmpPath, fsc.O_RDWR | fsc.O_CREAT | fsc.O_TRUNC, 0o640);
      const fresh = new LogFile(0, this.state.path, fh, 0, this.device);
      for (const m of this.messages.values()) {
        const rcpts: Array<[number, RcptStatus, string?]> = [];
        m.rcpts.forEach((r, i) => r.status !== 'pending' && rcpts.push([i, r.status, r.reply]));
        if (rcpts.length === 0 && m.attempts === 0 && !m.held) continue;
        const change: StateChange = { rcpts, attempts: m.attempts, next: m.nextAttemptAt, ...(m.held ? { held: true } : {}), ...(m.warned ? { warned: true } : {}) };
        void fresh.append(RecordType.state, m.id, [Buffer.from(JSON.stringify(change))]).written.catch(() => undefined);
      }
      for (const id of this.tombstones.keys())
        void fresh.append(RecordType.state, id, [Buffer.from('{"done":true}')]).written.catch(() => undefined);
      await fresh.idle();
      if (fresh.written !== fresh.reserved) throw new Error('writing the compacted state log failed');
      await fresh.sync();
      await fsp.rename(tmpPath, this.state.path);
      await this.device.syncDir(this.dir);
      const old = this.state;
      this.state = fresh;
      await old.close().catch(() => undefined);
    } catch (e) {
      this.log.error({ err: (e as Error).message }, 'spool: compacting the state log failed');
      await fsp.rm(tmpPath, { force: true }).catch(() => undefined);
    } finally {
      this.compacting = null;
      for (const { id, change } of this.compactQueue.splice(0)) this.writeState(id, change);
    }
  }

  /**
   * Empties sealed segments that are kept alive only by a little long-deferred
   * mail: their queued messages are copied to the head (same queue id, new
   * commit record), then the old copies are released. A crash in between
   * leaves both copies; recovery keeps the later one, so nothing is lost or
   * doubled. Returns the number of messages moved.
   */
  async relocateSparse(): Promise<number> {
    if (this.relocating || this.closed) return 0;
    this.relocating = true;
    let moved = 0;
    try {
      const now = this.opts.now();
      const live = new Map<number, { bytes: number; msgs: Set<QueuedMessage> }>();
      for (const m of this.messages.values())
        for (const e of m.extents) {
          let l = live.get(e.file);
          if (!l) live.set(e.file, (l = { bytes: 0, msgs: new Set() }));
          l.bytes += e.length;
          l.msgs.add(m);
        }
      for (const seg of [...this.segments.values()]) {
        if (!seg.sealed || seg.refs === 0 || now - (seg.sealedAt ?? now) < this.opts.relocateAfterMs) continue;
        const l = live.get(seg.seq);
        if (!l || l.bytes > seg.written * this.opts.relocateRatio) continue;
        for (const m of l.msgs) {
          if (this.closed) break;
          if (this.messages.get(m.id) !== m) continue;
          try {
            await this.relocate(m);
            moved++;
          } catch (e) {
            this.log.warn({ queueId: m.id, err: (e as Error).message }, 'spool: could not relocate a message; it stays where it is');
          }
        }
      }
      if (moved) this.log.info({ moved }, 'spool: relocated deferred mail out of sparse segments');
    } finally {
      this.relocating = false;
    }
    return moved;
  }

  private async relocate(m: QueuedMessage): Promise<void> {
    const inc = new Incoming(this, m.id);
    for await (const chunk of this.reader(m)) {
      if (!inc.write([chunk as Buffer])) await inc.drained();
    }
    await inc.settle();
    const seg = this.current();
    if (!inc.segments.has(seg.seq)) {
      inc.segments.add(seg.seq);
      seg.refs++;
    }
    try {
      if (inc.bytes !== m.size) throw new SpoolError('io', `relocation read ${inc.bytes} of ${m.size} bytes`);
      const payload = Buffer.from(JSON.stringify({ v: 1, size: m.size, envelope: m.envelope }));
      await seg.append(RecordType.commit, m.id, [payload]).written;
      await Promise.all([...inc.segments].filter((f) => f !== seg.seq).map((f) => this.segments.get(f)?.sealedDurable ?? Promise.resolve()));
      await seg.sync();
    } catch (e) {
      this.release(inc);
      throw e;
    }
    if (this.messages.get(m.id) !== m) {
      // finished while it was being copied: the copy must stay marked done too
      const t = this.tombstones.get(m.id);
      if (t) for (const f of inc.segments) t.add(f);
      this.release(inc);
      return;
    }
    const old = { segments: m.segments };
    m.extents = inc.extents;
    m.segments = inc.segments;
    this.release(old);
  }

  /** Segment files on disk (for tests and status). */
  segmentCount(): number {
    return this.segments.size;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.stateTimer) clearInterval(this.stateTimer);
    if (this.relocateTimer) clearInterval(this.relocateTimer);
    const nextSeg = this.nextReady ?? (await this.next?.catch(() => null)) ?? null;
    for (const seg of this.segments.values()) await seg.close().catch(() => undefined);
    if (nextSeg && nextSeg.refs === 0) await fsp.rm(nextSeg.path, { force: true });
    await this.state.idle();
    await this.state.sync().catch(() => undefined);
    await this.state.close();
  }
}

/** A message being received: its chunks go to the spool as they arrive. */
export class Incoming {
  readonly id: QueueId;
  private readonly spool: Spool;
  readonly extents: Extent[] = [];
  readonly segments = new Set<number>();
  bytes = 0;
  private outstanding = 0;
  private writes: Promise<void>[] = [];
  failure: Error | null = null;
  private drainWaiters: Array<() => void> = [];
  private finished = false;

  constructor(spool: Spool, id: QueueId) {
    this.spool = spool;
    this.id = id;
  }

  /**
   * Appends body bytes (the Buffers are written as they are, not copied).
   * Returns false when the sender should pause until drained().
   */
  write(parts: Buffer[]): boolean {
    if (this.failure || this.finished) return true;
    let n = 0;
    for (const p of parts) n += p.length;
    if (n === 0) return true;
    this.bytes += n;
    this.outstanding += n;
    let p: Promise<void>;
    try {
      p = this.spool.appendChunk(this, parts);
    } catch (e) {
      this.fail(e as Error);
      return true;
    }
    p = p.then(
      () => {
        this.outstanding -= n;
        if (this.outstanding < MESSAGE_HIGH_WATER / 2) for (const f of this.drainWaiters.splice(0)) f();
      },
      (e: Error) => this.fail(e),
    );
    this.writes.push(p);
    if (this.writes.length > 64) this.writes = [Promise.all(this.writes).then(() => undefined)];
    return this.outstanding < MESSAGE_HIGH_WATER;
  }

  /** Waits for every write so far; throws the first failure. */
  async settle(): Promise<void> {
    await Promise.all(this.writes);
    if (this.failure) throw this.failure;
  }

  drained(): Promise<void> {
    if (this.outstanding < MESSAGE_HIGH_WATER / 2 || this.failure) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  private fail(e: Error): void {
    if (!this.failure) this.failure = toSpoolError(e);
    this.outstanding = 0;
    for (const f of this.drainWaiters.splice(0)) f();
  }

  /** Makes the message durable. Resolves only after its flush; then the 250 may be sent. */
  async commit(envelope: Envelope): Promise<QueuedMessage> {
    if (this.finished) throw new SpoolError('io', 'message already finished');
    await Promise.all(this.writes);
    if (this.failure) {
      this.abort();
      throw this.failure;
    }
    this.finished = true;
    try {
      return await this.spool.commitIncoming(this, envelope);
    } catch (e) {
      this.spool.abortIncoming(this);
      throw toSpoolError(e as Error);
    }
  }

  /**
   * The bytes written so far, read back from the segments in blocks (after
   * every write settled), for checks that need the whole message before the
   * commit (policy/policy.ts dataEnd). Nothing is held in memory.
   */
  async readBack(): Promise<Readable> {
    await this.settle();
    const view = { id: this.id, extents: this.extents, segments: this.segments, envelope: {} } as unknown as QueuedMessage;
    return this.spool.reader(view);
  }

  /** Forgets the message; its bytes stay in the segment as garbage until the segment goes. */
  abort(): void {
    if (this.finished) return;
    this.finished = true;
    this.spool.abortIncoming(this);
  }
}

function toSpoolError(e: Error): SpoolError {
  if (e instanceof SpoolError) return e;
  const code = (e as NodeJS.ErrnoException).code;
  return new SpoolError(code === 'ENOSPC' || code === 'EDQUOT' ? 'full' : 'io', `spool write failed: ${e.message}`, { cause: e });
}

function parseEnvelope(payload: Buffer): { size: number; envelope: Envelope } | null {
  try {
    const o = JSON.parse(payload.toString('utf8')) as { v: number; size: number; envelope: Envelope };
    if (o.v !== 1 || typeof o.size !== 'number' || !o.envelope || !Array.isArray(o.envelope.to)) return null;
    if (o.envelope.headers !== undefined && typeof o.envelope.headers !== 'string') return null;
    return { size: o.size, envelope: o.envelope };
  } catch {
    return null;
  }
}

function parseState(payload: Buffer): StateChange {
  try {
    return JSON.parse(payload.toString('utf8')) as StateChange;
  } catch {
    return {};
  }
}

function applyState(m: QueuedMessage, c: StateChange): void {
  if (c.done) for (const r of m.rcpts) if (r.status === 'pending') r.status = 'delivered';
  if (c.rcpts)
    for (const [i, status, reply] of c.rcpts) {
      const r = m.rcpts[i];
      if (r) {
        r.status = status;
        if (reply !== undefined) r.reply = reply;
      }
    }
  if (c.attempts !== undefined) m.attempts = c.attempts;
  if (c.next !== undefined) m.nextAttemptAt = c.next;
  if (c.held !== undefined) m.held = c.held;
  if (c.warned !== undefined) m.warned = c.warned;
}
