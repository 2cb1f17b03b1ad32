/*
 * seed-config.ts: makes the configuration a card starts with, for flash.sh --config.
 *
 *   node scripts/seed-config.ts --factory FACTORY.json --seed SEED.json --out DIR
 *
 * The seed (domains, internal servers, network, admin password hash, or any other
 * setting) is laid over the image's factory configuration: objects are merged
 * setting by setting, anything else (lists included) is replaced. The result is
 * validated with moatd's own schema and written in the configuration store's
 * format (config/store.ts): DIR/config.json and DIR/config.json.d/rev-000001.json,
 * committed by user "flash.sh", so moatd starts from it as revision 1.
 *
 * Must never write anything when the result is invalid (exit status 2, a line
 * per bad setting), and never print the seed's secrets (password hashes).
 * Called by flash.sh.
 */
import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { parseConfig } from '../firmware/config/schema.ts';
import { ConfigStore, nodeFs, writeFileDurably } from '../firmware/config/store.ts';

function fail(msg: string): never {
  process.stderr.write(`seed-config: ${msg}\n`);
  process.exit(2);
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** The seed over the base: objects merged key by key, everything else replaced. */
export function overlay(base: unknown, seed: unknown): unknown {
  if (!isObject(base) || !isObject(seed)) return structuredClone(seed);
  const out: Record<string, unknown> = structuredClone(base);
  for (const [k, v] of Object.entries(seed)) out[k] = k in out ? overlay(out[k], v) : structuredClone(v);
  return out;
}

function readJson(file: string, what: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    fail(`cannot read the ${what} ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (text.length > 1024 * 1024) fail(`the ${what} ${file} is over 1 MiB`);
  try {
    return JSON.parse(text);
  } catch (e) {
    fail(`the ${what} ${file} is not JSON: ${(e as Error).message}`);
  }
}

const { values } = (() => {
  try {
    return parseArgs({ options: { factory: { type: 'string' }, seed: { type: 'string' }, out: { type: 'string' } }, strict: true });
  } catch (e) {
    return fail((e as Error).message);
  }
})();
if (!values.factory || !values.seed || !values.out) fail('usage: seed-config.ts --factory FILE --seed FILE --out DIR');

const seed = readJson(values.seed, 'configuration');
if (!isObject(seed)) fail(`${values.seed}: expected a JSON object of settings`);
const doc = overlay(readJson(values.factory, 'factory configuration'), seed);
try {
  parseConfig(doc);
} catch (e) {
  fail(`${values.seed}: ${(e as Error).message}`);
}
const file = join(values.out, 'config.json');
await mkdir(values.out, { recursive: true });
await writeFileDurably(nodeFs, file, JSON.stringify(doc, null, 2) + '\n', 0o640);
const store = await ConfigStore.open(file, { validate: parseConfig });
const revision = await store.commit(doc, { user: 'flash.sh', comment: `seeded from ${values.seed.split('/').pop()}` });
process.stdout.write(`seed-config: ${file} valid, revision ${revision}\n`);
