/*
 * scan/pipeline.ts: the stage interface and the chain that runs the DATA stream
 * through the scan stages on its way to the spool.
 *
 * A stage is a tiny observer (STYLE 11): push(chunk) looks at a chunk and may
 * record a refusing verdict; end() is called once after the last chunk and
 * returns the stage's verdict, if any. The chain passes the very same Buffer
 * objects through every stage and on to the sink (the spool writer). Once a
 * stage has refused, nothing more reaches the sink, but the chain keeps
 * accepting chunks so the caller can drain the stream and reply at the end.
 *
 * Must never: copy, concatenate, convert to a string or keep a chunk (a stage
 * carries only small state across chunk boundaries); hand the sink a byte after
 * a refusal; throw on hostile input. Called by smtp/inbound.ts (receive/pump).
 */

/** A refusal: the SMTP reply to the final dot and the reason for the log. */
export type Verdict = {
  /** Name of the stage that refused. */
  stage: string;
  code: number;
  /** Starts with the enhanced status code, e.g. '5.6.0 ...'. */
  text: string;
  /** Short, for the log. */
  reason: string;
};

export type Stage = {
  readonly name: string;
  /** The verdict this stage has reached so far, or null. */
  readonly verdict: Verdict | null;
  /** Looks at the chunk; never copies or keeps it (a stage that sends it on, as clamd's does, holds it only until written). */
  push(chunk: Buffer): void;
  /** After the last chunk: the stage's verdict, or null to let the message through. */
  end(): Verdict | null;
  /** Work that runs beside the stream (an external scanner): its verdict, awaited after end(). */
  settle?(): Promise<Verdict | null>;
  /** When the stage is behind (a socket buffer full): a promise to wait for before the next chunk. */
  pressure?(): Promise<void> | null;
  /** The message is abandoned (client gone, spool failure): release what the stage holds. */
  abort?(): void;
  /** Header fields to add to the message (CRLF-terminated lines), known after end(). */
  headers?(): string;
};

/** Where accepted bytes go; returns false when the producer should wait (backpressure). */
export type Sink = (chunk: Buffer) => boolean;

export class Chain {
  readonly #stages: readonly Stage[];
  readonly #sink: Sink;
  #verdict: Verdict | null = null;
  #ended = false;

  constructor(stages: readonly Stage[], sink: Sink) {
    this.#stages = stages;
    this.#sink = sink;
  }

  /** The first refusal so far, if any. */
  get verdict(): Verdict | null {
    return this.#verdict;
  }

  /**
   * Runs a chunk through the stages and, unless a stage has refused, into the
   * sink. Returns false when the producer should wait for drained() (the sink
   * or a stage is behind); true otherwise, and always once refused.
   */
  push(chunk: Buffer): boolean {
    if (this.#verdict || this.#ended) return true;
    const stages = this.#stages;
    let behind = false;
    for (let i = 0; i < stages.length; i++) {
      const s = stages[i]!;
      s.push(chunk);
      if (s.verdict) {
        this.#verdict = s.verdict;
        return true;
      }
      if (s.pressure && s.pressure()) behind = true;
    }
    return this.#sink(chunk) && !behind;
  }

  /** Resolves when the sink (through sinkDrained) and every stage can take more. */
  async drained(sinkDrained: () => Promise<void>): Promise<void> {
    await sinkDrained();
    for (const s of this.#stages) {
      const p = s.pressure?.();
      if (p) await p;
    }
  }

  /**
   * Ends the stages and waits for the ones that work beside the stream: the
   * first refusal in stage order, or null to accept.
   */
  async finish(): Promise<Verdict | null> {
    const v = this.end();
    if (v) {
      this.abort();
      return v;
    }
    const settled = await Promise.all(this.#stages.map((s) => (s.settle ? s.settle() : null)));
    for (const r of settled) if (r) return (this.#verdict = r);
    return null;
  }

  /** Releases what stages hold (sockets) when the message is abandoned; idempotent. */
  abort(): void {
    for (const s of this.#stages) s.abort?.();
  }

  /** Header fields the stages want added, once the message is accepted. */
  headers(): string {
    let h = '';
    for (const s of this.#stages) if (s.headers) h += s.headers();
    return h;
  }

  /** Ends every stage; returns the first verdict (the earliest refusal, else the first stage's at end). */
  end(): Verdict | null {
    if (this.#ended) return this.#verdict;
    this.#ended = true;
    for (const s of this.#stages) {
      const v = s.end();
      if (!this.#verdict && v) this.#verdict = v;
    }
    return this.#verdict;
  }
}
