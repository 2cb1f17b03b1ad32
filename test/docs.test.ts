// Every reply moat can give in the dialogue is documented in the README's reply table,
// and every setting of the schema is documented in its configuration table.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Replies } from '../firmware/smtp/inbound.ts';
import { configSchema } from '../firmware/config/schema.ts';
import { PolicyReplies } from '../firmware/policy/replies.ts';

const readme = readFileSync(join(import.meta.dirname, '..', 'README.md'), 'utf8');

test('every SMTP reply moat sends is in the README', () => {
  for (const [name, make] of Object.entries(Replies)) {
    const text = typeof make === 'function' ? (make as (n: number) => Error & { responseCode: number })(1).message : make;
    const code = typeof make === 'function' ? (make as (n: number) => Error & { responseCode: number })(1).responseCode : 421;
    const enhanced = /^(\d\.\d{1,3}\.\d{1,3})/.exec(text)?.[1];
    assert.ok(enhanced, `${name} carries an enhanced status code`);
    assert.ok(readme.includes(`${code} ${enhanced}`) || readme.includes(`\`${code}\``) && readme.includes(enhanced), `README documents ${name}: ${code} ${enhanced}`);
  }
});

test('every reply of the anti-abuse policy is in the README, with its text', () => {
  for (const [name, make] of Object.entries(PolicyReplies)) {
    const r = make('zone.example');
    assert.ok(readme.includes(`${r.responseCode} ${r.message.replace('zone.example', 'ZONE')}`), `README documents PolicyReplies.${name}: ${r.responseCode} ${r.message}`);
  }
});

test('every configuration setting is in the README', () => {
  const walk = (shape: Record<string, unknown>, prefix: string, out: string[]) => {
    for (const [k, v] of Object.entries(shape)) {
      const path = prefix ? `${prefix}.${k}` : k;
      out.push(path);
      let t = v as { def?: { innerType?: unknown; type?: string; shape?: unknown; element?: unknown; in?: unknown } ; shape?: Record<string, unknown> };
      // unwrap defaults, optionals and pipes down to an object, if any
      for (let i = 0; i < 6 && t && !t.shape; i++) t = (t.def?.innerType ?? t.def?.in) as typeof t;
      if (t?.shape) walk(t.shape, path, out);
      const el = (v as { def?: { innerType?: { def?: { element?: { shape?: Record<string, unknown> } } }; element?: { shape?: Record<string, unknown> } } }).def;
      const arr = el?.element ?? el?.innerType?.def?.element;
      if (arr?.shape) walk(arr.shape, path, out);
    }
    return out;
  };
  const paths = walk(configSchema.shape as Record<string, unknown>, '', []);
  assert.ok(paths.length > 30, `found ${paths.length} settings`);
  for (const p of paths) {
    const leaf = p.split('.').at(-1)!;
    assert.ok(readme.includes(`\`${p}\``) || readme.includes(`"${leaf}"`), `README documents ${p}`);
  }
});
