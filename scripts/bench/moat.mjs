// moatd as the relay under test: `node dist/moatd.js --config FILE`.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { register } from './cleanup.mjs';
import { startProcess, waitForPort } from './proc.mjs';

function isObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

export function deepMerge(a, b) {
  if (!isObject(a) || !isObject(b)) return b;
  const out = { ...a };
  for (const [k, v] of Object.entries(b)) out[k] = isObject(v) && isObject(a[k]) ? deepMerge(a[k], v) : v;
  return out;
}

export function moatConfig({ port, sinkPort, dataDir, syncDelayMs, extra }) {
  const base = {
    hostname: 'mx.bench.test',
    inbound: {
      listen: `127.0.0.1:${port}`,
      localDomains: ['example.com'],
      recipients: { mode: 'any' },
      maxMessageSize: 26214400,
      maxRecipients: 100,
    },
    internal: { servers: [{ host: '127.0.0.1', port: sinkPort, priority: 10, weight: 1 }] },
    storage: { dataDir, syncDelayMs },
    control: { socket: join(dataDir, 'control.sock') },
    log: { level: 'warn' },
  };
  return extra ? deepMerge(base, extra) : base;
}

/**
 * Starts moatd with a fresh config and data dir. Ready when it logs
 * {"msg":"listening"} on stdout or its port accepts connections.
 * Throws (with the tail of its output) if it exits or is not ready in time.
 */
export async function startMoat({ repoRoot, moatd, confDir, dataDir, port, sinkPort, syncDelayMs, extra, name }) {
  mkdirSync(confDir, { recursive: true });
  mkdirSync(dataDir, { recursive: true });
  const config = moatConfig({ port, sinkPort, dataDir, syncDelayMs, extra });
  const file = join(confDir, 'moat.json');
  writeFileSync(file, JSON.stringify(config, null, 2) + '\n');
  let listening = false;
  let buf = '';
  const onStdout = (d) => {
    if (listening) return;
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (line.includes('"listening"')) {
        try {
          if (JSON.parse(line).msg === 'listening') listening = true;
        } catch {
          /* not JSON */
        }
      }
    }
    if (buf.length > 65536) buf = buf.slice(-65536);
  };
  const proc = startProcess(`moatd ${name}`, process.execPath, [moatd, '--config', file], {
    cwd: repoRoot,
    onStdout,
    tail: 65536,
  });
  const handle = register(`moatd ${name}`, () => proc.stop(10_000));
  const ok = await waitForPort(port, { timeoutMs: 30_000, alive: () => !proc.exitInfo, ready: () => listening });
  const outputTail = () =>
    [proc.stderr.text, proc.stdout.text]
      .join('\n')
      .split('\n')
      .filter((l) => l.trim())
      .slice(-6)
      .join(' | ');
  if (!ok) {
    const ei = proc.exitInfo;
    await handle.done();
    throw new Error(
      `moatd ${ei ? `exited (${ei.error?.message ?? `code ${ei.code}, signal ${ei.signal}`})` : 'did not listen within 30 s'}: ${outputTail() || 'no output'}`,
    );
  }
  return {
    pid: proc.pid,
    configFile: file,
    get exitInfo() {
      return proc.exitInfo;
    },
    outputTail,
    stop: () => handle.done(),
  };
}

export function moatBuilt(moatd) {
  return existsSync(moatd);
}
