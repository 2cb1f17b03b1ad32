/*
 * moatd.ts: the mail daemon's command line.
 *
 *   node dist/moatd.js --config /data/moat/config.json
 *
 * Reads and validates the configuration (a clear message naming each bad
 * setting, exit status 2), then runs until SIGTERM or SIGINT, when it stops
 * taking connections, lets deliveries in flight finish and closes the spool.
 * SIGHUP reloads the signature files.
 */
import './runtime.ts';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ConfigError, parseConfig } from './config/schema.ts';
import { createLogger } from './log/logger.ts';
import { startDaemon } from './daemon.ts';

function fail(msg: string, code = 2): never {
  process.stderr.write(`moatd: ${msg}\n`);
  process.exit(code);
}

const { values } = (() => {
  try {
    return parseArgs({ options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } }, strict: true });
  } catch (e) {
    return fail((e as Error).message);
  }
})();
if (values.help) {
  process.stdout.write('usage: moatd --config FILE\n');
  process.exit(0);
}
if (!values.config) fail('missing --config FILE');

let doc: unknown;
try {
  doc = JSON.parse(readFileSync(values.config, 'utf8'));
} catch (e) {
  fail(`cannot read configuration ${values.config}: ${(e as Error).message}`);
}
let config;
try {
  config = parseConfig(doc);
} catch (e) {
  if (e instanceof ConfigError) fail(`${values.config}: ${e.message}`);
  throw e;
}

const log = createLogger(config.log.level);
const daemon = await startDaemon(config, log).catch((e: Error) => fail(`cannot start: ${e.message}`, 1));
let stopping = false;
for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.on(sig, () => {
    if (stopping) return;
    stopping = true;
    log.info({ ev: 'signal', signal: sig }, 'stopping');
    daemon.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
}
// SIGHUP: read the signature files again (after an update); the old set stays if the new one is unusable
process.on('SIGHUP', () => {
  daemon.scan.reloadSignatures().then(
    () => log.info({ ev: 'signatures-reloaded', ...daemon.scan.signatures }, 'signatures reloaded'),
    (e: Error) => log.error({ ev: 'signatures-reload-failed', err: e.message }, 'signature reload failed; the previous set stays'),
  );
});
