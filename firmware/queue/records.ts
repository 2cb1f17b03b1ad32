/*
 * queue/records.ts: the on-disk record format of the spool's segment log and
 * state log, and queue ids.
 *
 * Every record is a 32-byte header and a payload. The header carries its own
 * CRC and the payload's CRC, so that a torn write at the end of a file or a bad
 * sector in the middle is recognised and skipped, never taken for mail.
 * Encoding never copies payload bytes: a record is the header plus the caller's
 * Buffers, written with writev. Called by queue/segment-log.ts and queue/spool.ts.
 *
 *   offset size  field
 *   0      4     magic "MOAT"
 *   4      1     type (1 chunk, 2 commit, 3 state)
 *   5      1     format version (1)
 *   6      2     flags (0)
 *   8      6     queue id: milliseconds since the epoch
 *   14     2     queue id: sequence within that millisecond
 *   16     4     payload length
 *   20     4     payload CRC-32
 *   24     4     reserved (0)
 *   28     4     CRC-32 of bytes 0..27
 */
import { crc32 } from 'node:zlib';

export const HEADER_BYTES = 32;
export const MAGIC = 0x5441_4f4d; // "MOAT" read as little-endian u32
export const VERSION = 1;
export const MAX_PAYLOAD = 64 * 1024 * 1024;

export const RecordType = { chunk: 1, commit: 2, state: 3 } as const;
export type RecordType = (typeof RecordType)[keyof typeof RecordType];

/** A queue id: 12 hex digits of milliseconds and 4 of sequence, upper case. Sorts by arrival. */
export type QueueId = string;

export type RecordHeader = { type: RecordType; id: QueueId; length: number; payloadCrc: number };

export function formatId(ms: number, seq: number): QueueId {
  return ms.toString(16).toUpperCase().padStart(12, '0') + seq.toString(16).toUpperCase().padStart(4, '0');
}

export function isQueueId(s: string): boolean {
  return /^[0-9A-F]{16}$/.test(s);
}

/** Hands out strictly increasing ids, even when the clock steps back. */
export class IdSource {
  private lastMs = 0;
  private seq = 0;
  private readonly now: () => number;
  constructor(now: () => number = Date.now) {
    this.now = now;
  }
  /** Never hand out an id at or below one already in the spool. */
  observe(id: QueueId): void {
    const ms = parseInt(id.slice(0, 12), 16);
    const seq = parseInt(id.slice(12), 16);
    if (ms > this.lastMs || (ms === this.lastMs && seq >= this.seq)) {
      this.lastMs = ms;
      this.seq = seq + 1;
    }
  }
  next(): QueueId {
    const now = this.now();
    if (now > this.lastMs) {
      this.lastMs = now;
      this.seq = 0;
    }
    if (this.seq > 0xffff) {
      this.lastMs += 1;
      this.seq = 0;
    }
    return formatId(this.lastMs, this.seq++);
  }
}

/** Builds a record header for a payload made of `parts` (not copied). */
export function encodeHeader(type: RecordType, id: QueueId, parts: readonly Buffer[]): Buffer {
  let length = 0;
  let crc = 0;
  for (const p of parts) {
    length += p.length;
    crc = crc32(p, crc);
  }
  if (length > MAX_PAYLOAD) throw new RangeError(`record payload of ${length} bytes is over the limit`);
  const h = Buffer.alloc(HEADER_BYTES);
  h.writeUInt32LE(MAGIC, 0);
  h.writeUInt8(type, 4);
  h.writeUInt8(VERSION, 5);
  h.writeUIntLE(parseInt(id.slice(0, 12), 16), 8, 6);
  h.writeUInt16LE(parseInt(id.slice(12), 16), 14);
  h.writeUInt32LE(length, 16);
  h.writeUInt32LE(crc, 20);
  h.writeUInt32LE(crc32(h.subarray(0, 28)), 28);
  return h;
}

/** Parses a header; null when it is not a valid one (torn, zeroed or foreign bytes). */
export function decodeHeader(buf: Buffer, at = 0): RecordHeader | null {
  if (buf.length - at < HEADER_BYTES) return null;
  if (buf.readUInt32LE(at) !== MAGIC) return null;
  if (buf.readUInt32LE(at + 28) !== crc32(buf.subarray(at, at + 28))) return null;
  const type = buf.readUInt8(at + 4);
  if (buf.readUInt8(at + 5) !== VERSION) return null;
  if (type !== RecordType.chunk && type !== RecordType.commit && type !== RecordType.state) return null;
  const length = buf.readUInt32LE(at + 16);
  if (length > MAX_PAYLOAD) return null;
  return {
    type,
    id: formatId(buf.readUIntLE(at + 8, 6), buf.readUInt16LE(at + 14)),
    length,
    payloadCrc: buf.readUInt32LE(at + 20),
  };
}

export function payloadCrc(buf: Buffer): number {
  return crc32(buf);
}
