/*
 * scan/size.ts: the size stage. Counts the bytes of the DATA stream and refuses
 * a message longer than inbound.maxMessageSize with 552 5.3.4 (RFC 5321
 * §4.5.3.1.10). The stream is still drained (the chain stops the spool writes),
 * so the client gets the refusal as the reply to its final dot.
 *
 * Must never: keep or copy a chunk. Built by smtp/inbound.ts for each message;
 * the SIZE= check at MAIL stays with smtp-server's `size` option.
 */
import type { Stage, Verdict } from './pipeline.ts';

export const tooBigText = (limit: number) => `5.3.4 Message size exceeds fixed limit of ${limit} bytes`;

export class SizeStage implements Stage {
  readonly name = 'size';
  readonly #limit: number;
  #bytes = 0;
  #verdict: Verdict | null = null;

  constructor(limit: number) {
    this.#limit = limit;
  }

  get verdict(): Verdict | null {
    return this.#verdict;
  }

  /** Bytes seen so far. */
  get bytes(): number {
    return this.#bytes;
  }

  push(chunk: Buffer): void {
    this.#bytes += chunk.length;
    if (!this.#verdict && this.#bytes > this.#limit)
      this.#verdict = { stage: this.name, code: 552, text: tooBigText(this.#limit), reason: `size over ${this.#limit} bytes` };
  }

  end(): Verdict | null {
    return this.#verdict;
  }
}
