/*
 * moatd.ts: the mail daemon's command line.
 *
 *   node dist/moatd.js --config /data/moat/config.json
 *
 * Opens the configuration store on FILE (config/store.ts: FILE is the running
 * configuration, its revisions live in FILE.d/). A damaged FILE falls back to
 * the newest valid revision and is reported as a fault by `status`; nothing
 * usable stops it at once (a message naming each bad setting, exit status 2).
 * The first start with a good FILE and no revisions records it as revision 1,
 * so that there is always something to fall back on. Then it runs, with the
 * control socket at control.socket, until SIGTERM or SIGINT, when it stops
 * taking connections, lets deliveries in flight finish and closes the spool.
 * SIGHUP reloads the signature files.
 * `--factory FILE` names the document `factory-reset` commits.
 * `--version` prints the version; `--check FILE` validates FILE with the schema
 * and exits (0 valid, 2 with a line per bad setting) without starting anything:
 * the image build's smoke test and flash.sh --config use it.
 */
import './runtime.ts';
import { startSdNotify } from './health/watchdog.ts';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parseConfig, type Config } from './config/schema.ts';
import { ConfigStore, type StoreLog } from './config/store.ts';
import { createLogger } from './log/logger.ts';
import { LogRing } from './log/ring.ts';
import { Health } from './health/health.ts';
import { startDaemon } from './daemon.ts';

function fail(msg: string, code = 2): never {
  process.stderr.write(`moatd: ${msg}\n`);
  process.exit(code);
}

const { values } = (() => {
  try {
    return parseArgs({ options: { config: { type: 'string', short: 'c' }, factory: { type: 'string' }, check: { type: 'string' }, version: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } }, strict: true });
  } catch (e) {
    return fail((e as Error).message);
  }
})();
if (values.help) {
  process.stdout.write('usage: moatd --config FILE [--factory FILE] | --check FILE | --version\n');
  process.exit(0);
}
if (values.version) {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  process.stdout.write(`moatd ${pkg.version} (node ${process.version}, ${process.platform}-${process.arch})\n`);
  process.exit(0);
}
if (values.check !== undefined) {
  try {
    parseConfig(JSON.parse(readFileSync(values.check, 'utf8')));
  } catch (e) {
    fail(`${values.check}: ${(e as Error).message}`);
  }
  process.stdout.write(`${values.check}: valid configuration\n`);
  process.exit(0);
}
if (!values.config) fail('missing --config FILE');

// the store logs before the logger exists (its level is in the configuration): keep those lines until then
const early: Array<['info' | 'warn', object, string]> = [];
let storeSink: StoreLog | null = null;
const storeLog: StoreLog = {
  info: (o, m) => (storeSink ? storeSink.info(o, m) : early.push(['info', o, m])),
  warn: (o, m) => (storeSink ? storeSink.warn(o, m) : early.push(['warn', o, m])),
};
let store: ConfigStore<Config>;
try {
  store = await ConfigStore.open<Config>(values.config, { validate: parseConfig, log: storeLog });
} catch (e) {
  fail(`cannot read configuration ${values.config}: ${(e as Error).message}`);
}
let factory: unknown;
if (values.factory) {
  try {
    factory = JSON.parse(readFileSync(values.factory, 'utf8'));
    parseConfig(factory);
  } catch (e) {
    fail(`factory configuration ${values.factory}: ${(e as Error).message}`);
  }
}

const config = store.config;
const ring = new LogRing();
const log = createLogger(config.log.level, undefined, ring);
storeSink = log;
for (const [level, o, m] of early.splice(0)) log[level](o, m);
const health = new Health();
if (store.recovery.recovered) {
  health.raise('config-recovered', `running configuration was damaged (${store.recovery.reason}); revision ${store.recovery.revision} restored`);
}
if (store.revisions().length === 0) await store.commit(store.document, { user: 'moatd', comment: 'initial revision' });
const daemon = await startDaemon(config, log, { store, ring, health, ...(factory !== undefined ? { factory } : {}) }).catch((e: Error) =>
  fail(`cannot start: ${e.message}`, 1),
);
// systemd: READY=1 now, WATCHDOG=1 every WATCHDOG_USEC/2 (health/watchdog.ts); nothing without NOTIFY_SOCKET
const notifier = startSdNotify({ warn: (m) => log.warn({ ev: 'sd-notify', err: m }, 'cannot notify systemd') });
let stopping = false;
for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.on(sig, () => {
    if (stopping) return;
    stopping = true;
    notifier?.stop();
    log.info({ ev: 'signal', signal: sig }, 'stopping');
    daemon.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
}
// SIGHUP: read the signature files again (after an update); the old set stays if the new one is unusable
process.on('SIGHUP', () => {
  daemon.reloadSignatures().then(
    () => log.info({ ev: 'signatures-reloaded', ...daemon.scan.signatures }, 'signatures reloaded'),
    (e: Error) => log.error({ ev: 'signatures-reload-failed', err: e.message }, 'signature reload failed; the previous set stays'),
  );
});
