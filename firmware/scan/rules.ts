/*
 * scan/rules.ts: content rules on the message header, a MIME walker listener.
 *
 * Each header rule names a field and a regular expression tested against each
 * value of that field in the top-level header (unfolded, at most the header
 * size limit long). Action 'reject' refuses the message (550 5.7.1 naming the
 * rule); 'tag' lets it through with an `X-Moat-Rule:` header naming every tag
 * rule that matched, for the internal server to file on. Body literal rules
 * run in the signature stage (scan/signature-scan.ts).
 *
 * Must never: run a pattern that did not compile at configuration time (the
 * schema compiles them). Built per message by scan/build.ts.
 */
import type { HeaderField, MimeListener } from './mime.ts';
import type { Verdict } from './pipeline.ts';

export type HeaderRule = { name: string; field: string; pattern: RegExp; action: 'reject' | 'tag' };

export const ruleRejectText = (name: string) => `5.7.1 Message content rejected by rule ${name}`;

export class HeaderRules implements MimeListener {
  readonly name = 'rules';
  readonly #rules: readonly HeaderRule[];
  readonly tags: string[] = [];

  constructor(rules: readonly HeaderRule[]) {
    this.#rules = rules;
  }

  headers(fields: readonly HeaderField[]): Verdict | null {
    for (const r of this.#rules) {
      for (const f of fields) {
        if (f.name !== r.field) continue;
        r.pattern.lastIndex = 0;
        if (!r.pattern.test(f.value)) continue;
        if (r.action === 'reject') return { stage: this.name, code: 550, text: ruleRejectText(r.name), reason: `rule ${r.name}` };
        if (!this.tags.includes(r.name)) this.tags.push(r.name);
        break;
      }
    }
    return null;
  }
}

/** The header that carries tag rule matches. */
export function tagHeader(names: readonly string[]): string {
  return names.length ? `X-Moat-Rule: ${names.join(', ')}\r\n` : '';
}
