/*
 * queue/sync-device.ts: the one place the spool asks the kernel to make data
 * durable (fdatasync of files, fsync of directories).
 *
 * For benchmarks it can add a fixed delay to every flush and serialise them,
 * which is how an SD card behaves (5–50 ms a flush, one at a time). It must
 * never skip or reorder a flush. Called by queue/segment-log.ts and queue/spool.ts.
 */
import { promises as fsp } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

export class SyncDevice {
  readonly delayMs: number;
  private chain: Promise<unknown> = Promise.resolve();
  /** Number of flushes issued, for tests and metrics. */
  flushes = 0;

  constructor(delayMs = 0) {
    this.delayMs = delayMs;
  }

  /** fdatasync: the data and what is needed to read it back (the size), not timestamps. */
  datasync(fh: fsp.FileHandle): Promise<void> {
    return this.run(() => fh.datasync());
  }

  /** fsync of a directory, so that a created, renamed or removed entry survives a crash. */
  async syncDir(path: string): Promise<void> {
    const fh = await fsp.open(path, 'r');
    try {
      await this.run(() => fh.sync());
    } finally {
      await fh.close();
    }
  }

  private run(op: () => Promise<void>): Promise<void> {
    this.flushes++;
    if (this.delayMs === 0) return op();
    const p = this.chain.then(async () => {
      await sleep(this.delayMs);
      await op();
    });
    this.chain = p.catch(() => undefined);
    return p;
  }
}
