/*
 * log/ring.ts: the last lines of the log, kept in memory for `show log` and the
 * control socket's `log.tail`.
 *
 * Bounded twice: by a number of lines and by bytes (a line over the byte cap
 * is cut). Sits as a tee in front of the logger's real destination, so it sees
 * exactly what is written (already redacted by the logger). Must never grow
 * without bound or block the logger. Called by log/logger.ts; read by
 * control/server.ts.
 */
import type { DestinationStream } from 'pino';

export class LogRing {
  private readonly lines: string[] = [];
  private bytes = 0;
  readonly maxLines: number;
  readonly maxBytes: number;
  readonly maxLineBytes: number;

  constructor(opts: { maxLines?: number; maxBytes?: number; maxLineBytes?: number } = {}) {
    this.maxLines = opts.maxLines ?? 1000;
    this.maxBytes = opts.maxBytes ?? 512 * 1024;
    this.maxLineBytes = opts.maxLineBytes ?? 4096;
  }

  push(text: string): void {
    for (let line of text.split('\n')) {
      if (line === '') continue;
      if (line.length > this.maxLineBytes) line = line.slice(0, this.maxLineBytes) + '…';
      this.lines.push(line);
      this.bytes += line.length;
      while (this.lines.length > this.maxLines || this.bytes > this.maxBytes) this.bytes -= this.lines.shift()!.length;
    }
  }

  /** The last n lines (all when n is larger), oldest first. */
  tail(n: number): string[] {
    return n <= 0 ? [] : this.lines.slice(-n);
  }

  get size(): number {
    return this.lines.length;
  }

  /** A destination that writes to `dest` and keeps a copy here. */
  tee(dest: DestinationStream): DestinationStream {
    return {
      write: (s: string) => {
        this.push(s);
        return dest.write(s);
      },
    } as DestinationStream;
  }
}
