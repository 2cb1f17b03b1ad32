/*
 * policy/checks/gtube.ts: recognises GTUBE, the Generic Test for Unsolicited
 * Bulk Email (the SpamAssassin test string), anywhere in the message, so the
 * spam path can be tested end to end. Worth policy.spam.gtubeScore points.
 *
 * GtubeStage is a scan stage (scan/pipeline.ts) on the DATA stream: it looks
 * at each chunk in place (Buffer.indexOf), and across a chunk boundary
 * compares the carried tail (at most 67 bytes, the only thing it copies) with
 * the head of the next chunk without joining them. It never refuses by itself:
 * the gtube check turns what it found into spam points at the end of data.
 * Must never keep or copy a chunk. Created by policy/policy.ts dataStages();
 * listed in the data chain as `gtube`.
 */
import { CONTINUE, type Check } from '../chain.ts';
import type { CheckServices } from '../registry.ts';
import type { Stage, Verdict } from '../../scan/pipeline.ts';

export const GTUBE = Buffer.from('XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X', 'latin1');

export class GtubeStage implements Stage {
  readonly name = 'gtube';
  readonly verdict: Verdict | null = null;
  found = false;
  /** The last bytes seen (fewer than GTUBE), a copy: the only state across chunks. */
  #tail = Buffer.alloc(0);

  push(chunk: Buffer): void {
    if (this.found || chunk.length === 0) return;
    const n = GTUBE.length;
    const tail = this.#tail;
    // a match that starts in the tail and ends in this chunk
    for (let k = Math.min(n - 1, tail.length); k >= 1; k--) {
      const rest = n - k;
      if (rest > chunk.length) continue; // cannot end in this chunk; the tail carries it on
      if (tail.subarray(tail.length - k).equals(GTUBE.subarray(0, k)) && chunk.subarray(0, rest).equals(GTUBE.subarray(k))) {
        this.found = true;
        return;
      }
    }
    if (chunk.indexOf(GTUBE) >= 0) {
      this.found = true;
      return;
    }
    const keep = n - 1;
    if (chunk.length >= keep) this.#tail = Buffer.from(chunk.subarray(chunk.length - keep));
    else {
      const t = Buffer.allocUnsafe(Math.min(keep, tail.length + chunk.length));
      const fromTail = t.length - chunk.length;
      tail.copy(t, 0, tail.length - fromTail);
      chunk.copy(t, fromTail);
      this.#tail = t;
    }
  }

  end(): Verdict | null {
    return null;
  }
}

export function gtubeCheck(s: CheckServices): Check {
  const points = s.config.policy.spam.gtubeScore;
  return {
    name: 'gtube',
    run(ctx) {
      if (!ctx.tx.gtube?.found) return CONTINUE;
      return { action: 'tag', reason: 'GTUBE test string', score: points };
    },
  };
}
