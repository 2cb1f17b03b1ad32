/*
 * policy/checks/gtube.ts: recognises GTUBE, the Generic Test for Unsolicited
 * Bulk Email (the SpamAssassin test string), anywhere in the message, so the
 * spam path can be tested end to end. Worth policy.spam.gtubeScore points.
 *
 * GtubeScanner looks at each chunk of the read-back message in place
 * (Buffer.indexOf), keeping only the last 67 bytes across a chunk boundary.
 * Must never keep or copy a chunk. Listed in the data chain as `gtube`.
 */
import { CONTINUE, type Check } from '../chain.ts';
import type { CheckServices } from '../registry.ts';

export const GTUBE = Buffer.from('XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X', 'latin1');

export class GtubeScanner {
  found = false;
  #tail = Buffer.alloc(0);

  push(chunk: Buffer): void {
    if (this.found || chunk.length === 0) return;
    const n = GTUBE.length;
    if (this.#tail.length) {
      // the junction: the carried tail and the first n-1 bytes of this chunk
      const head = chunk.subarray(0, n - 1);
      const joint = Buffer.concat([this.#tail, head]);
      if (joint.indexOf(GTUBE) >= 0) return void (this.found = true);
    }
    if (chunk.indexOf(GTUBE) >= 0) return void (this.found = true);
    const keep = Math.min(n - 1, chunk.length + this.#tail.length);
    this.#tail = chunk.length >= keep ? Buffer.from(chunk.subarray(chunk.length - keep)) : Buffer.concat([this.#tail, chunk]).subarray(-keep);
  }
}

export function gtubeCheck(s: CheckServices): Check {
  const points = s.config.policy.spam.gtubeScore;
  return {
    name: 'gtube',
    run(ctx) {
      if (!ctx.tx.body?.gtube) return CONTINUE;
      return { action: 'tag', reason: 'GTUBE test string', score: points };
    },
  };
}
