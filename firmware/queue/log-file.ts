/*
 * queue/log-file.ts: one append-only file of records, written strictly in order.
 *
 * Appends reserve their offset at once (so a record's place is known before it
 * is written) and are written by one writev at a time, so the file never has a
 * hole: a crash can only tear its tail. A failed write truncates the file back
 * and fails every append that had not reached the disk yet; nothing after a
 * failure is ever written on top of garbage. Durability comes from sync(),
 * which resolves after a flush that started after the call (group commit:
 * callers that arrive while a flush runs share the next one).
 * Must never copy payload bytes: the caller's Buffers go to writev as they are.
 * Used by queue/segment-log.ts (message segments) and queue/spool.ts (state log).
 */
import { promises as fsp } from 'node:fs';
import { HEADER_BYTES, decodeHeader, encodeHeader, payloadCrc, type QueueId, type RecordHeader, type RecordType } from './records.ts';
import type { SyncDevice } from './sync-device.ts';

/** Where a record's payload lies. */
export type Extent = { file: number; offset: number; length: number };

type PendingWrite = { bufs: Buffer[]; offset: number; bytes: number; resolve: () => void; reject: (e: Error) => void };
type SyncWaiter = { resolve: () => void; reject: (e: Error) => void };

const MAX_IOV = 512;

export class LogFile {
  readonly seq: number;
  readonly path: string;
  readonly fh: fsp.FileHandle;
  private readonly device: SyncDevice;
  /** Bytes handed out to appends, written or not. */
  reserved: number;
  /** Bytes known to be written. */
  written: number;
  /** Bytes of appends queued or being written. */
  pendingBytes = 0;
  private queue: PendingWrite[] = [];
  private writing = false;
  private syncWaiters: SyncWaiter[] = [];
  private syncsInFlight = 0;
  private readonly maxSyncsInFlight: number;
  private idleWaiters: Array<() => void> = [];
  closed = false;

  constructor(seq: number, path: string, fh: fsp.FileHandle, size: number, device: SyncDevice, maxSyncsInFlight = 1) {
    this.seq = seq;
    this.path = path;
    this.fh = fh;
    this.reserved = size;
    this.written = size;
    this.device = device;
    this.maxSyncsInFlight = maxSyncsInFlight;
  }

  /**
   * Appends one record whose payload is `parts` (kept by reference until written).
   * Returns where the payload will lie and a promise for the write.
   */
  append(type: RecordType, id: QueueId, parts: Buffer[]): { extent: Extent; written: Promise<void> } {
    if (this.closed) throw new Error(`log file ${this.path} is closed`);
    const header = encodeHeader(type, id, parts);
    let bytes = HEADER_BYTES;
    for (const p of parts) bytes += p.length;
    const offset = this.reserved;
    this.reserved += bytes;
    this.pendingBytes += bytes;
    const extent = { file: this.seq, offset: offset + HEADER_BYTES, length: bytes - HEADER_BYTES };
    const written = new Promise<void>((resolve, reject) => {
      this.queue.push({ bufs: [header, ...parts], offset, bytes, resolve, reject });
    });
    if (!this.writing) void this.drainQueue();
    return { extent, written };
  }

  private async drainQueue(): Promise<void> {
    this.writing = true;
    while (this.queue.length > 0) {
      let n = 0;
      let iov = 0;
      while (n < this.queue.length && iov + this.queue[n]!.bufs.length <= MAX_IOV) iov += this.queue[n++]!.bufs.length;
      if (n === 0) n = 1;
      const batch = this.queue.splice(0, n);
      const start = batch[0]!.offset;
      let total = 0;
      for (const w of batch) total += w.bytes;
      try {
        await writeFully(this.fh, batch.flatMap((w) => w.bufs), start, total);
        this.written = start + total;
        this.pendingBytes -= total;
        for (const w of batch) w.resolve();
      } catch (e) {
        const err = e as Error;
        const rest = this.queue.splice(0);
        this.reserved = start;
        this.pendingBytes = 0;
        await this.fh.truncate(start).catch(() => undefined);
        for (const w of [...batch, ...rest]) w.reject(err);
      }
    }
    this.writing = false;
    for (const f of this.idleWaiters.splice(0)) f();
  }

  /** Resolves when every append made so far has been written or failed. */
  idle(): Promise<void> {
    if (!this.writing && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Resolves after a flush that began after this call; call it once the writes to cover are done. */
  sync(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.syncWaiters.push({ resolve, reject });
      this.kickSync();
    });
  }

  private kickSync(): void {
    while (this.syncWaiters.length > 0 && this.syncsInFlight < this.maxSyncsInFlight) {
      const batch = this.syncWaiters.splice(0);
      this.syncsInFlight++;
      this.device.datasync(this.fh).then(
        () => {
          for (const w of batch) w.resolve();
        },
        (err: Error) => {
          for (const w of batch) w.reject(err);
        },
      ).finally(() => {
        this.syncsInFlight--;
        this.kickSync();
      });
    }
  }

  async read(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    const buf = into && into.length >= length ? into.subarray(0, length) : Buffer.allocUnsafe(length);
    let got = 0;
    while (got < length) {
      const { bytesRead } = await this.fh.read(buf, got, length - got, offset + got);
      if (bytesRead === 0) throw new Error(`unexpected end of ${this.path} at ${offset + got}`);
      got += bytesRead;
    }
    return buf;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.idle();
    this.closed = true;
    await this.fh.close();
  }
}

async function writeFully(fh: fsp.FileHandle, bufs: Buffer[], position: number, total: number): Promise<void> {
  let done = 0;
  let list = bufs;
  while (done < total) {
    const { bytesWritten } = await fh.writev(list, position + done);
    if (bytesWritten === 0) throw Object.assign(new Error('write made no progress'), { code: 'EIO' });
    done += bytesWritten;
    if (done < total) {
      // drop what was written, keep views of the rest
      let skip = bytesWritten;
      const rest: Buffer[] = [];
      for (const b of list) {
        if (skip >= b.length) {
          skip -= b.length;
          continue;
        }
        rest.push(skip > 0 ? b.subarray(skip) : b);
        skip = 0;
      }
      list = rest;
    }
  }
}

export type ScannedRecord = { header: RecordHeader; offset: number; payload: Buffer | null };

/**
 * Reads every valid record of a file in order. A bad stretch (torn tail, zeroed
 * or damaged bytes) is skipped by searching for the next valid header; its size is
 * reported through onSkip. Payloads of chunk records are verified but not kept
 * unless keepPayload says so (payload Buffers are reused between calls).
 */
export async function scanFile(
  fh: fsp.FileHandle,
  size: number,
  onRecord: (r: ScannedRecord) => void,
  opts: { keepPayload: (type: RecordType) => boolean; onSkip?: (offset: number, bytes: number) => void },
): Promise<number> {
  const head = Buffer.allocUnsafe(HEADER_BYTES);
  let scratch = Buffer.allocUnsafe(256 * 1024);
  let pos = 0;
  let lastGood = 0;
  while (pos + HEADER_BYTES <= size) {
    await readAt(fh, head, pos);
    const h = decodeHeader(head);
    if (h && pos + HEADER_BYTES + h.length <= size) {
      if (scratch.length < h.length) scratch = Buffer.allocUnsafe(h.length);
      const payload = scratch.subarray(0, h.length);
      await readAt(fh, payload, pos + HEADER_BYTES);
      if (payloadCrc(payload) === h.payloadCrc) {
        if (pos > lastGood) opts.onSkip?.(lastGood, pos - lastGood);
        onRecord({ header: h, offset: pos + HEADER_BYTES, payload: opts.keepPayload(h.type) ? Buffer.from(payload) : null });
        pos += HEADER_BYTES + h.length;
        lastGood = pos;
        continue;
      }
    }
    pos = await findMagic(fh, pos + 1, size);
  }
  if (size > lastGood) opts.onSkip?.(lastGood, size - lastGood);
  return lastGood;
}

async function readAt(fh: fsp.FileHandle, buf: Buffer, position: number): Promise<void> {
  let got = 0;
  while (got < buf.length) {
    const { bytesRead } = await fh.read(buf, got, buf.length - got, position + got);
    if (bytesRead === 0) throw new Error('short read');
    got += bytesRead;
  }
}

const MAGIC_BYTES = Buffer.from('MOAT', 'latin1');

async function findMagic(fh: fsp.FileHandle, from: number, size: number): Promise<number> {
  const block = Buffer.allocUnsafe(1024 * 1024);
  let pos = from;
  while (pos + HEADER_BYTES <= size) {
    const len = Math.min(block.length, size - pos);
    const view = block.subarray(0, len);
    await readAt(fh, view, pos);
    const i = view.indexOf(MAGIC_BYTES);
    if (i >= 0) return pos + i;
    pos += len - (MAGIC_BYTES.length - 1);
  }
  return size;
}
