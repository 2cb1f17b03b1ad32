// Fuzzing the configuration schema (firmware/config/schema.ts), the gate every commit and
// every start passes: random JSON documents, and a valid configuration with one setting
// replaced by random JSON, removed, or joined by an unknown one. Whatever comes in:
// parseConfig returns a frozen configuration or throws a ConfigError whose problems each
// name their path (in the section that was changed); never another kind of throw.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { checkConfig, configOutcomes } from './properties.ts';
import { fuzzParams } from './settings.ts';

/** A valid configuration touching most sections (each leaf is a place to mutate). */
export const BASE = {
  hostname: 'mx.example.com',
  inbound: { listen: '0.0.0.0:25', localDomains: ['example.com', 'example.org'], maxMessageSize: 26214400, recipients: { mode: 'any' } },
  internal: { servers: [{ host: '10.0.0.5', port: 25, priority: 10, weight: 1, tls: 'none' }], networks: ['10.0.0.0/8'], connectTimeoutMs: 2000 },
  queue: { minRetryMs: 60000, maxRetryMs: 3600000 },
  storage: { dataDir: '/data/spool', minFreeBytes: 67108864 },
  outbound: {
    port: 25,
    removeHeaders: ['Received'],
    users: [{ name: 'scanner', passwordHash: 'scrypt$16384$8$1$c2FsdHNhbHQ=$aGFzaGhhc2hoYXNo' }],
    dkim: [{ domain: 'example.com', selector: 'mail2026', keyFile: '/data/dkim/example.com.pem' }],
  },
  scan: { signatures: { files: ['/data/sig/local.ndb'], eicar: true }, clamd: { address: '127.0.0.1:3310', onFailure: 'tempfail' }, mime: { maxParts: 100 } },
  dns: { servers: ['127.0.0.1:53'], timeoutMs: 2000 },
  log: { level: 'info' },
};

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function leaves(v: Json, path: string[] = []): string[][] {
  if (v === null || typeof v !== 'object') return [path];
  const keys = Array.isArray(v) ? v.map((_, i) => String(i)) : Object.keys(v);
  return [path, ...keys.flatMap((k) => leaves((v as Record<string, Json>)[k]!, [...path, k]))];
}
const PATHS = leaves(BASE as unknown as Json).filter((p) => p.length > 0);

function mutate(doc: Json, path: string[], op: 'set' | 'delete' | 'add', value: Json, key: string): Json {
  const copy = structuredClone(doc) as Record<string, Json>;
  let parent: Record<string, Json> = copy;
  for (const k of path.slice(0, -1)) parent = parent[k] as Record<string, Json>;
  const last = path.at(-1)!;
  if (op === 'set') parent[last] = value;
  else if (op === 'delete') {
    if (Array.isArray(parent)) parent.splice(Number(last), 1);
    else delete parent[last];
  } else if (parent[last] !== null && typeof parent[last] === 'object' && !Array.isArray(parent[last])) {
    // JSON.parse makes own properties even of "__proto__" and "constructor"
    Object.defineProperty(parent[last], key, { value, enumerable: true, configurable: true, writable: true });
  } else parent[last] = value;
  return copy;
}

const oddValue: fc.Arbitrary<Json> = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }) as fc.Arbitrary<Json>,
  fc.constantFrom<Json>('', ' ', 'x'.repeat(5000), '\n', '\u0000', '-1', '1e999', 'NaN', '0x10', '999999999999999999999', '/', '../../etc/passwd', 'a\nb', '127.0.0.1:99999', '[::1]:25', '*', '__proto__'),
  fc.constantFrom<Json>(-1, 0, 1.5, 2 ** 53, -(2 ** 31), 1e308, Number.MIN_VALUE, [], {}, [null], { '': null }),
);
const oddKey = fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', '', ' ', 'a.b', 'x'.repeat(400), 'é\n'));
const mutation = fc.tuple(fc.constantFrom(...PATHS), fc.constantFrom('set', 'delete', 'add') as fc.Arbitrary<'set' | 'delete' | 'add'>, oddValue, oddKey);

test('config schema: the base document is valid (else every mutation would be refused for the wrong reason)', () => {
  checkConfig(BASE);
  assert.equal(configOutcomes.accepted, 1);
});

test('config schema: random JSON and mutated configurations give a configuration or a ConfigError naming the path, never another throw', () => {
  fc.assert(
    fc.property(mutation, ([path, op, value, key]) => checkConfig(mutate(BASE as unknown as Json, path, op, value, key), path)),
    fuzzParams(3000),
  );
  fc.assert(
    fc.property(fc.jsonValue({ maxDepth: 4 }), (doc) => checkConfig(doc)),
    fuzzParams(1000),
  );
  fc.assert(
    fc.property(fc.string({ maxLength: 200 }), (text) => {
      let doc: unknown;
      try {
        doc = JSON.parse(text);
      } catch {
        return; // not JSON: the store refuses it before the schema sees it
      }
      checkConfig(doc);
    }),
    fuzzParams(300),
  );
  assert.ok(configOutcomes.accepted > 50 && configOutcomes.refused > 1000, `the inputs reach both outcomes (${JSON.stringify(configOutcomes)})`);
});
