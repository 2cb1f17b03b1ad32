/*
 * scan/body-rules.ts: content rules that look for a literal in the body.
 *
 * A rule's literal is searched with Buffer.indexOf (several GB/s for one
 * pattern) in the raw message as it streams, and in the decoded content of
 * base64 and quoted-printable parts (which the raw bytes do not show). Across
 * chunk boundaries only the last (length - 1) bytes of each stream are kept,
 * in a small junction buffer searched together with the head of the next
 * chunk. The cost grows with the number of body rules, which the schema caps;
 * signatures, which come by the thousand, have their own matcher.
 *
 * Must never: keep or copy more than the junction of a chunk. Built per
 * message by scan/build.ts (one BodyRules serves as the raw-stream stage and
 * as the MIME walker's listener for decoded parts; the walker writes the tag
 * header for both).
 */
import type { MimeListener, PartInfo } from './mime.ts';
import type { Stage, Verdict } from './pipeline.ts';
import { ruleRejectText } from './rules.ts';

export type BodyRule = { name: string; literal: Buffer; action: 'reject' | 'tag' };

/** Finds a set of literals in one stream fed in pieces. */
class StreamSearch {
  readonly #rules: readonly BodyRule[];
  readonly #found: boolean[];
  readonly #tail: Buffer;
  #tailLen = 0;
  readonly #junction: Buffer;
  readonly #keep: number;

  constructor(rules: readonly BodyRule[]) {
    this.#rules = rules;
    this.#found = rules.map(() => false);
    this.#keep = Math.max(0, ...rules.map((r) => r.literal.length - 1));
    this.#tail = Buffer.alloc(this.#keep);
    this.#junction = Buffer.alloc(this.#keep * 2);
  }

  /** Searches data[start, end); returns the rules newly found. */
  feed(data: Uint8Array, start: number, end: number, onFound: (r: BodyRule) => void): void {
    const n = end - start;
    if (n <= 0) return;
    const rules = this.#rules;
    const buf = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    // the junction: tail of the stream so far + head of this piece
    if (this.#tailLen) {
      const head = Math.min(n, this.#keep);
      this.#tail.copy(this.#junction, 0, 0, this.#tailLen);
      buf.copy(this.#junction, this.#tailLen, start, start + head);
      const j = this.#junction.subarray(0, this.#tailLen + head);
      for (let i = 0; i < rules.length; i++) if (!this.#found[i] && j.includes(rules[i]!.literal)) this.#hit(i, onFound);
    }
    for (let i = 0; i < rules.length; i++) {
      if (this.#found[i]) continue;
      const at = buf.indexOf(rules[i]!.literal, start);
      if (at >= 0 && at + rules[i]!.literal.length <= end) this.#hit(i, onFound);
    }
    // keep the last #keep bytes of the stream
    if (n >= this.#keep) {
      buf.copy(this.#tail, 0, end - this.#keep, end);
      this.#tailLen = this.#keep;
    } else {
      const keepOld = Math.min(this.#tailLen, this.#keep - n);
      this.#tail.copy(this.#tail, 0, this.#tailLen - keepOld, this.#tailLen);
      buf.copy(this.#tail, keepOld, start, end);
      this.#tailLen = keepOld + n;
    }
  }

  #hit(i: number, onFound: (r: BodyRule) => void): void {
    this.#found[i] = true;
    onFound(this.#rules[i]!);
  }
}

export class BodyRules implements Stage, MimeListener {
  readonly name = 'rules';
  readonly #rules: readonly BodyRule[];
  readonly #raw: StreamSearch;
  #part: StreamSearch | null = null;
  #verdict: Verdict | null = null;
  readonly tags: string[] = [];
  readonly #onFound = (r: BodyRule): void => {
    if (r.action === 'tag') {
      if (!this.tags.includes(r.name)) this.tags.push(r.name);
    } else this.#verdict ??= { stage: this.name, code: 550, text: ruleRejectText(r.name), reason: `rule ${r.name}` };
  };

  constructor(rules: readonly BodyRule[]) {
    this.#rules = rules;
    this.#raw = new StreamSearch(rules);
  }

  get verdict(): Verdict | null {
    return this.#verdict;
  }

  // the raw stream (Stage)
  push(chunk: Buffer): void {
    this.#raw.feed(chunk, 0, chunk.length, this.#onFound);
  }

  end(): Verdict | null {
    return this.#verdict;
  }

  // decoded parts (MimeListener); identity parts are already in the raw stream
  partStart(p: PartInfo): Verdict | null {
    this.#part = p.encoding === 'identity' ? null : new StreamSearch(this.#rules);
    return null;
  }

  partData(_p: PartInfo, data: Uint8Array, start: number, end: number): Verdict | null {
    this.#part?.feed(data, start, end, this.#onFound);
    return this.#verdict;
  }

  partEnd(): Verdict | null {
    this.#part = null;
    return this.#verdict;
  }
}
