/*
 * moat-panel.ts: the front panel's command line.
 *
 *   node dist/moat-panel.js --config /data/moat/config.json [--device PATH] [--reboot-request FILE] [--dev]
 *
 * Runs the serial console (console/panel.ts) on console.device, talking to
 * moatd over control.socket, and the front panel (panel/start.ts): the LEDs
 * of panel.board and the button on panel.buttonDevice. `reboot` at the console
 * runs console/reboot.ts: with `--reboot-request FILE` (the appliance) it leaves
 * the request a root path unit acts on; `--dev` (the development gateway) makes
 * it say what it would do instead. Stops on SIGTERM or SIGINT. Must never run
 * the reboot through a shell.
 */
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { startPanel } from './console/panel.ts';
import { parseConfig } from './config/schema.ts';
import { startButton, startFrontPanel } from './panel/start.ts';
import { rebootAction } from './console/reboot.ts';

function fail(msg: string, code = 2): never {
  process.stderr.write(`moat-panel: ${msg}\n`);
  process.exit(code);
}

const { values } = (() => {
  try {
    return parseArgs({ options: { config: { type: 'string', short: 'c' }, device: { type: 'string' }, 'reboot-request': { type: 'string' }, dev: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } }, strict: true });
  } catch (e) {
    return fail((e as Error).message);
  }
})();
if (values.help) {
  process.stdout.write('usage: moat-panel --config FILE [--device PATH] [--reboot-request FILE] [--dev]\n');
  process.exit(0);
}
if (!values.config) fail('missing --config FILE');

const panel = await startPanel({
  configPath: values.config,
  ...(values.device ? { device: values.device } : {}),
  warn: (m) => process.stderr.write(`moat-panel: ${m}\n`),
  reboot: rebootAction({
    ...(values['reboot-request'] ? { requestFile: values['reboot-request'] } : {}),
    ...(values.dev ? { dev: true } : {}),
    say: (l) => process.stderr.write(`moat-panel: ${l}\n`),
  }),
}).catch((e: Error) => fail(`cannot start: ${e.message}`, 1));
process.stderr.write(`moat-panel: console on ${values.device ?? 'console.device'}\n`);
// the LEDs (panel/): lamp test, then moatd's health; the simulator renders its line on stderr
const config = parseConfig(JSON.parse(readFileSync(values.config, 'utf8')));
const front = await startFrontPanel(config, {
  render: (line) => process.stderr.write(`${line}\n`),
  warn: (m) => process.stderr.write(`moat-panel: ${m}\n`),
}).catch((e: Error) => fail(`cannot start the front panel: ${e.message}`, 1));
const button = startButton(config, {
  front,
  print: (line) => panel.print(line),
  addresses: () => (networkInterfaces()[config.network.interface] ?? []).map((a) => a.address),
  warn: (m) => process.stderr.write(`moat-panel: ${m}\n`),
});
for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => void Promise.all([panel.close(), front.close(), button?.close()]).then(() => process.exit(0)));
