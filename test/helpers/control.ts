// moatd in-process with its configuration store and control socket, in a throw-away folder.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig, type Config } from '../../firmware/config/schema.ts';
import { ConfigStore } from '../../firmware/config/store.ts';
import { startDaemon, type Daemon, type DaemonOptions } from '../../firmware/daemon.ts';
import { createLogger } from '../../firmware/log/logger.ts';
import { LogRing } from '../../firmware/log/ring.ts';
import { ControlClient } from '../../firmware/control/client.ts';

export type StoredMoat = {
  daemon: Daemon;
  store: ConfigStore<Config>;
  dir: string;
  configPath: string;
  socket: string;
  ring: LogRing;
  client(): Promise<ControlClient>;
  stop(): Promise<void>;
};

/** The configuration document the tests start from (the store's input form). */
export function baseDocument(dir: string, sinkPort: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    hostname: 'mx.example.com',
    inbound: { listen: '127.0.0.1:0', localDomains: ['example.com'] },
    internal: { servers: [{ host: '127.0.0.1', port: sinkPort, tls: 'none' }], connectTimeoutMs: 2000 },
    queue: { minRetryMs: 200, maxRetryMs: 1000 },
    storage: { dataDir: join(dir, 'data'), minFreeBytes: 1024 * 1024 },
    log: { level: 'info' },
    control: { socket: join(dir, 'control.sock') },
    ...extra,
  };
}

export async function startStoredMoat(sinkPort: number, o: { extra?: Record<string, unknown>; daemon?: DaemonOptions; dir?: string; keep?: boolean } = {}): Promise<StoredMoat> {
  const dir = o.dir ?? (await mkdtemp(join(tmpdir(), 'moat-ctl-')));
  const configPath = join(dir, 'config.json');
  if (!o.dir) await writeFile(configPath, JSON.stringify(baseDocument(dir, sinkPort, o.extra), null, 2));
  const store = await ConfigStore.open<Config>(configPath, { validate: parseConfig });
  if (store.revisions().length === 0) await store.commit(store.document, { user: 'test', comment: 'initial revision' });
  const ring = new LogRing();
  // the log goes to the ring only (and to stderr when MOAT_TEST_LOG is set)
  const log = createLogger('info', { write: (s: string) => (process.env.MOAT_TEST_LOG ? process.stderr.write(s) : true) } as never, ring);
  const daemon = await startDaemon(store.config, log, { store, ring, ...o.daemon });
  const socket = store.config.control.socket;
  const clients: ControlClient[] = [];
  return {
    daemon,
    store,
    dir,
    configPath,
    socket,
    ring,
    async client() {
      const c = await ControlClient.connect(socket);
      clients.push(c);
      return c;
    },
    async stop() {
      for (const c of clients) c.close();
      await daemon.close();
      if (!o.dir && !o.keep) await rm(dir, { recursive: true, force: true });
    },
  };
}
