// Starts moatd in-process with a throw-away data directory.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig, type ConfigInput } from '../../firmware/config/schema.ts';
import { startDaemon, type Daemon } from '../../firmware/daemon.ts';
import { silentLogger, createLogger } from '../../firmware/log/logger.ts';
import { startSink, type Sink } from './sink.ts';

export type TestMoat = Daemon & { dataDir: string; stop(): Promise<void> };

type Overrides = {
  inbound?: Partial<ConfigInput['inbound']>;
  internal?: Partial<ConfigInput['internal']>;
  queue?: ConfigInput['queue'];
  storage?: Partial<ConfigInput['storage']>;
  scan?: ConfigInput['scan'];
  policy?: ConfigInput['policy'];
  dns?: ConfigInput['dns'];
  outbound?: ConfigInput['outbound'];
  health?: ConfigInput['health'];
};

export function testConfig(dataDir: string, servers: Array<{ port: number; priority?: number; tls?: 'none' | 'opportunistic' | 'required' }>, o: Overrides = {}) {
  return parseConfig({
    hostname: 'mx.example.com',
    inbound: { listen: '127.0.0.1:0', localDomains: ['example.com', 'example.org'], ...o.inbound },
    internal: { servers: servers.map((s) => ({ host: '127.0.0.1', tls: 'none' as const, ...s })), connectTimeoutMs: 2000, ...o.internal },
    queue: { minRetryMs: 200, maxRetryMs: 1000, ...o.queue },
    storage: { dataDir, minFreeBytes: 1024 * 1024, ...o.storage },
    log: { level: process.env.MOAT_TEST_LOG ? 'debug' : 'silent' },
    ...(o.scan ? { scan: o.scan } : {}),
    ...(o.policy ? { policy: o.policy } : {}),
    ...(o.dns ? { dns: o.dns } : {}),
    ...(o.outbound ? { outbound: o.outbound } : {}),
    ...(o.health ? { health: o.health } : {}),
  });
}

export async function startMoat(servers: Parameters<typeof testConfig>[1], o: Overrides & { dataDir?: string } = {}): Promise<TestMoat> {
  const dataDir = o.dataDir ?? (await mkdtemp(join(tmpdir(), 'moat-e2e-')));
  const config = testConfig(dataDir, servers, o);
  const log = process.env.MOAT_TEST_LOG ? createLogger('debug') : silentLogger();
  const d = await startDaemon(config, log);
  return Object.assign(d, {
    dataDir,
    async stop() {
      await d.close();
      if (!o.dataDir) await rm(dataDir, { recursive: true, force: true });
    },
  });
}

/** Runs fn with a sink standing in for the internal server and moat relaying to it; cleans both up. */
export async function withRelay(
  o: Overrides & { dataDir?: string; sink?: Parameters<typeof startSink>[0] },
  fn: (r: { moat: TestMoat; sink: Sink }) => Promise<void>,
): Promise<void> {
  const sink = await startSink(o.sink);
  const moat = await startMoat([{ port: sink.port }], o);
  try {
    await fn({ moat, sink });
  } finally {
    await moat.stop();
    await sink.close();
  }
}
