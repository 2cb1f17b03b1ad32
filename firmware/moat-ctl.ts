/*
 * moat-ctl.ts: `moat ctl`, the control socket from the appliance's shell.
 *
 *   moat-ctl [--config FILE | --socket PATH] [--yes] COMMAND...   one console command (operational mode)
 *   moat-ctl [--config FILE | --socket PATH] [--yes] -            console commands from standard input,
 *                                                                 one per line (configure/commit allowed)
 *   moat-ctl [--config FILE | --socket PATH] raw CMD [JSON]       one protocol request; prints the JSON result
 *   moat-ctl hash-password                                        a password from standard input (one line) →
 *                                                                 its scrypt hash, for outbound.users
 *
 * The commands are the serial console's (console/commands.ts), with output to
 * standard output. The socket is control.socket of FILE, or PATH, or
 * /run/moat/control.sock. Exit status: 0 done, 1 a command failed (or a
 * question was refused for want of --yes), 2 usage.
 * Must never ask for or handle the console password (the socket's file mode
 * decides who may use it), and never reboot (that is the console's job).
 */
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { parseConfig } from './config/schema.ts';
import { ControlClient, ControlError } from './control/client.ts';
import { execute, UsageError, type CommandContext, type Mode } from './console/commands.ts';
import { PathError } from './config/paths.ts';
import { hashPassword, passwordProblem } from './console/auth.ts';

function fail(msg: string, code = 2): never {
  process.stderr.write(`moat-ctl: ${msg}\n`);
  process.exit(code);
}

const { values, positionals } = (() => {
  try {
    return parseArgs({
      options: { config: { type: 'string', short: 'c' }, socket: { type: 'string', short: 's' }, yes: { type: 'boolean', short: 'y' }, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    return fail((e as Error).message);
  }
})();
if (values.help || positionals.length === 0) {
  process.stdout.write('usage: moat-ctl [--config FILE | --socket PATH] [--yes] COMMAND... | - | raw CMD [JSON] | hash-password\n');
  process.exit(values.help ? 0 : 2);
}

if (positionals[0] === 'hash-password') {
  // read from standard input, never from the command line (where `ps` would show it)
  const rl = createInterface({ input: process.stdin });
  const line = await new Promise<string>((resolve) => {
    rl.once('line', resolve);
    rl.once('close', () => resolve(''));
  });
  rl.close();
  const problem = passwordProblem(line);
  if (problem) fail(`hash-password: ${problem}`, 1);
  process.stdout.write((await hashPassword(line)) + '\n');
  process.exit(0);
}

let socket = values.socket ?? '/run/moat/control.sock';
if (values.config) {
  try {
    socket = parseConfig(JSON.parse(readFileSync(values.config, 'utf8'))).control.socket;
  } catch (e) {
    fail(`cannot read ${values.config}: ${(e as Error).message}`);
  }
}

const client = await ControlClient.connect(socket).catch((e: Error) => fail(e.message, 1));

if (positionals[0] === 'raw') {
  let args: unknown = {};
  try {
    args = positionals[2] ? JSON.parse(positionals[2]) : {};
  } catch {
    fail('raw: the arguments must be a JSON object');
  }
  try {
    const r = await client.request(positionals[1] ?? '', args as Record<string, unknown>);
    process.stdout.write(JSON.stringify(r, null, 2) + '\n');
    client.close();
    process.exit(0);
  } catch (e) {
    process.stderr.write(`moat-ctl: ${(e as Error).message}\n`);
    client.close();
    process.exit(1);
  }
}

let mode: Mode = 'operational';
let stop = false;
let refused = false;
const ctx: CommandContext = {
  get mode() {
    return mode;
  },
  setMode: (m) => (mode = m),
  user: `shell:${process.env.USER ?? process.getuid?.() ?? 'unknown'}`.slice(0, 64).replace(/[^\w.@:-]/g, '_').replace(/:/g, '-'),
  ctl: async () => client,
  out: async (lines) => void process.stdout.write(lines.map((l) => l + '\n').join('')),
  confirm: async (q) => {
    if (values.yes) return true;
    process.stderr.write(`moat-ctl: ${q} (refused: add --yes)\n`);
    refused = true;
    return false;
  },
  logout: () => (stop = true),
  reboot: async () => {
    throw new UsageError('reboot from the serial console or with systemctl reboot');
  },
  queueIds: [],
};

async function run(line: string): Promise<boolean> {
  try {
    await execute(ctx, line);
    return true;
  } catch (e) {
    const known = e instanceof UsageError || e instanceof PathError || e instanceof ControlError;
    process.stderr.write(`moat-ctl: ${known ? '' : 'error: '}${(e as Error).message}\n`);
    return false;
  }
}

let ok = true;
if (positionals[0] === '-' && positionals.length === 1) {
  for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
    if (line.length > 4096) {
      process.stderr.write('moat-ctl: line longer than 4096 characters refused\n');
      ok = false;
      continue;
    }
    if (line.trim().startsWith('#') || line.trim() === '') continue;
    if (!(await run(line))) ok = false;
    if (stop) break;
  }
} else ok = await run(positionals.join(' '));
client.close();
process.exit(ok && !refused ? 0 : 1);
