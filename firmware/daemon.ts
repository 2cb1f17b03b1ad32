/*
 * daemon.ts: assembles moatd from its parts and runs it.
 *
 * Opens the spool (recovering the queue from disk), starts delivery and the
 * inbound listener, and shuts all of it down in order. Takes a validated,
 * frozen Config; reads no globals. Called by moatd.ts (the CLI), the
 * development launcher and the end-to-end tests.
 *
 * A new configuration is applied without a restart (apply/prepare): the
 * listening socket stays, and each new connection is handed to the inbound
 * server built for the configuration current when it arrived; sessions in
 * flight finish on the server they started with. The listener is rebound only
 * when inbound.listen changes. New deliveries and recipient checks use the
 * new settings; storage.* needs a restart (the spool is opened once).
 * With a configuration store (moatd.ts passes one) it also runs the control
 * socket (control/server.ts), which commits through the store and applies here.
 */
import net, { type AddressInfo } from 'node:net';
import type { Config } from './config/schema.ts';
import type { ConfigStore } from './config/store.ts';
import { writeNetworkFiles } from './config/network-files.ts';
import { startControl, type ControlServer } from './control/server.ts';
import { InternalDelivery } from './delivery/internal.ts';
import { OutboundDelivery, type OutboundOptions } from './delivery/outbound.ts';
import { MtaStsPolicies } from './delivery/mta-sts.ts';
import { Health } from './health/health.ts';
import { HealthMonitor } from './health/monitor.ts';
import type { Logger } from './log/logger.ts';
import type { LogRing } from './log/ring.ts';
import { RecipientDirectory } from './policy/recipients.ts';
import { QueueManager } from './queue/manager.ts';
import { Spool } from './queue/spool.ts';
import { createInbound, loadTls } from './smtp/inbound.ts';
import type { MoatSMTPServer } from './smtp/server-hooks.ts';
import { orderServers } from './delivery/internal.ts';
import { readFileSync } from 'node:fs';
import { ScanService, loadSignatures } from './scan/build.ts';
import { DnsResolver } from './dns/resolver.ts';
import { Policy } from './policy/policy.ts';
import type { AbuseTracker } from './policy/abuse-tracker.ts';

export type Daemon = {
  port: number;
  /** The scan chain of the current configuration. */
  readonly scan: ScanService;
  /** Reads the signature files again (SIGHUP); the old set stays if the new one is unusable. */
  reloadSignatures(): Promise<void>;
  spool: Spool;
  queue: QueueManager;
  health: Health;
  /** The health model (health/monitor.ts): state and reasons for `status` and the LEDs. */
  monitor: HealthMonitor;
  /** SMTP transactions accepted since the start (the panel's ACTIVITY LED follows it). */
  readonly transactions: number;
  /** The configuration new work uses. */
  readonly config: Config;
  /** Builds everything a configuration needs (and binds a changed listener) without switching to it. */
  prepare(config: Config): Promise<Prepared>;
  /** prepare() and activate() in one. */
  apply(config: Config): Promise<void>;
  /** The control socket, when the daemon runs with a store. */
  control?: ControlServer;
  close(): Promise<void>;
};

export type Prepared = {
  /** Settings that changed but apply only at the next start. */
  restartNeeded: string[];
  activate(): void;
  discard(): void;
};

export type DaemonOptions = {
  tls?: { key: Buffer; cert: Buffer };
  /** The configuration store: enables the control socket and committing. */
  store?: ConfigStore<Config>;
  /** The log's ring buffer, for the control socket's log.tail. */
  ring?: LogRing;
  health?: Health;
  /** DNS servers for the control socket's DNS test ("IP" or "IP:PORT"); default: the system's. */
  dnsServers?: string[];
  /** Document committed by "factory-reset"; without it the command is refused. */
  factory?: unknown;
};

type Generation = {
  config: Config;
  server: MoatSMTPServer;
  delivery: InternalDelivery;
  scan: ScanService;
  policy: Policy;
};

function readKey(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`outbound.dkim: cannot read key file ${file}: ${(e as Error).message}`);
  }
}

/** TLS, connection reuse and the smart host of outbound delivery; files are read now (a missing one stops the start). */
function outboundTransport(config: Config): Pick<OutboundOptions, 'tls' | 'idle' | 'smartHost'> {
  const o = config.outbound;
  const read = (setting: string, file: string) => {
    try {
      return readFileSync(file, 'utf8');
    } catch (e) {
      throw new Error(`${setting}: cannot read ${file}: ${(e as Error).message}`);
    }
  };
  const sh = o.smartHost;
  return {
    tls: { default: o.tls.default, domains: new Map(Object.entries(o.tls.domains)), ...(o.tls.caFile ? { ca: read('outbound.tls.caFile', o.tls.caFile) } : {}) },
    idle: { idleMs: o.idleConnectionMs, maxPerDestination: o.perDomainConcurrency, maxTotal: o.maxIdleConnections },
    ...(sh
      ? {
          smartHost: {
            host: sh.host,
            port: sh.port,
            tls: sh.tls,
            // the first line of the file; never logged
            ...(sh.user && sh.passwordFile ? { auth: { user: sh.user, pass: read('outbound.smartHost.passwordFile', sh.passwordFile).split(/\r?\n/, 1)[0]!, allowPlaintext: sh.allowPlaintextAuth } } : {}),
          },
        }
      : {}),
  };
}

export async function startDaemon(config: Config, log: Logger, opts: DaemonOptions = {}): Promise<Daemon> {
  const health = opts.health ?? new Health();
  // signatures first: a configured file that cannot be used stops the start, before anything is opened
  let signatures = await loadSignatures(config, log);
  const spool = await Spool.open({
    dataDir: config.storage.dataDir,
    segmentBytes: config.storage.segmentBytes,
    minFreeBytes: config.storage.minFreeBytes,
    syncDelayMs: config.storage.syncDelayMs,
    log,
  });
  let queue: QueueManager | null = null;
  let transactions = 0;
  let tracker: AbuseTracker | undefined;

  function build(config: Config, tls?: { key: Buffer; cert: Buffer }, db = signatures): Generation {
    const delivery = new InternalDelivery(config, log);
    const scan = new ScanService(config, log, db);
    // the anti-abuse policy and the DNS resolver every lookup uses, built anew with each
    // configuration; the policy's memory of clients (blocks, counts, greylist) is one for
    // the life of moatd, so a commit does not lift a block
    const resolver = new DnsResolver(config.dns);
    const policy = new Policy(config, resolver, log, tracker ? { tracker } : {});
    tracker ??= policy.tracker;
    const probeTargets = orderServers(config.internal.servers, () => 0).map((s) => ({
      host: s.host,
      port: s.port,
      tls: s.tls,
      rejectUnauthorized: s.verifyCertificate,
      ...(s.caFile ? { ca: readFileSync(s.caFile, 'utf8') } : {}),
      ...(s.servername ? { servername: s.servername } : {}),
    }));
    const recipients = new RecipientDirectory(config.inbound.recipients, () => probeTargets, { heloName: config.hostname });
    const server = createInbound({
      config,
      spool,
      recipients,
      scan,
      resolve: resolver.resolve,
      log,
      policy,
      accepted: (m) => {
        transactions++;
        return queue!.enqueue(m);
      },
      tls: tls ?? loadTls(config.inbound.tls),
    });
    return { config, server, delivery, scan, policy };
  }

  let current = build(config, opts.tls);
  // mail for other domains (only internal clients can send it) goes out by MX; built anew
  // when a commit changes outbound.* or dns.* (its key and password files are read then)
  const buildOutbound = (config: Config) =>
    new OutboundDelivery({
      hostname: config.hostname,
      port: config.outbound.port,
      connectTimeoutMs: config.outbound.connectTimeoutMs,
      commandTimeoutMs: config.outbound.commandTimeoutMs,
      resolve: new DnsResolver(config.dns).resolve,
      ...(config.outbound.mtaSts.enabled
        ? { mtaSts: new MtaStsPolicies({ resolve: new DnsResolver(config.dns).resolve, timeoutMs: config.outbound.mtaSts.timeoutMs, maxPolicyBytes: config.outbound.mtaSts.maxPolicyBytes, maxEntries: config.outbound.mtaSts.maxEntries }) }
        : {}),
      removeHeaders: config.outbound.removeHeaders,
      dkim: new Map(config.outbound.dkim.map((k) => [k.domain, { domain: k.domain, selector: k.selector, privateKey: readKey(k.keyFile) }])),
      ...outboundTransport(config),
      log,
    });
  let outbound = buildOutbound(config);
  queue = new QueueManager({ config, spool, delivery: current.delivery, outbound, log });
  /** Generations still serving sessions. */
  const generations = new Set<Generation>([current]);
  const listeners = new Set<net.Server>();
  /** Listeners replaced by a rebind: closed to new connections, their sessions still running. */
  const retired: Array<Promise<void>> = [];

  const listen = async (l: Config['inbound']['listen']): Promise<net.Server> => {
    const listener = net.createServer((socket) => {
      const gen = current;
      gen.server.server.emit('connection', socket);
      socket.once('close', () => {
        if (gen !== current && gen.server.connections.size === 0) generations.delete(gen);
      });
    });
    listener.on('error', (e) => log.error({ ev: 'listener-error', err: e.message }, 'listener error'));
    await new Promise<void>((resolve, reject) => {
      listener.once('error', reject);
      listener.listen(l.port, l.host, () => {
        listener.off('error', reject);
        resolve();
      });
    });
    listeners.add(listener);
    return listener;
  };

  queue.start();
  let listener = await listen(config.inbound.listen);
  const bound = () => (listener.address() as AddressInfo).port;
  log.info({ ev: 'listening', address: config.inbound.listen.host, port: bound(), queued: spool.messages.size }, 'listening');

  const networkFiles = async (c: Config) => {
    try {
      const written = await writeNetworkFiles(c.network, c.hostname);
      if (written.length) log.info({ ev: 'network-files', files: written }, 'network settings written');
      health.clear('network-files');
    } catch (e) {
      health.raise('network-files', `cannot write the network settings: ${(e as Error).message}`);
      log.error({ ev: 'network-files', err: (e as Error).message }, 'cannot write the network settings');
    }
  };
  await networkFiles(config);

  const monitor = new HealthMonitor({
    config: () => current.config,
    listening: () => listener.listening,
    faults: () => health.list(),
    queue: () => {
      const first = spool.messages.values().next();
      return { total: spool.messages.size, oldestArrivedAt: first.done ? null : first.value.envelope.arrivedAt };
    },
  });
  monitor.start();

  const prepare = async (next: Config): Promise<Prepared> => {
    // changed signature settings are loaded now: a file that cannot be used refuses the commit
    const sameSignatures = JSON.stringify(next.scan.signatures) === JSON.stringify(current.config.scan.signatures);
    const db = sameSignatures ? signatures : await loadSignatures(next, log);
    const gen = build(next, undefined, db);
    const restartNeeded = (['dataDir', 'segmentBytes', 'minFreeBytes', 'syncDelayMs'] as const)
      .filter((k) => next.storage[k] !== current.config.storage[k])
      .map((k) => `storage.${k}`);
    if (next.control.socket !== current.config.control.socket) restartNeeded.push('control.socket');
    const outboundChanged =
      JSON.stringify([next.outbound, next.dns, next.hostname]) !== JSON.stringify([current.config.outbound, current.config.dns, current.config.hostname]);
    let nextOutbound: OutboundDelivery | null = null;
    try {
      // a key or password file that cannot be read refuses the commit
      if (outboundChanged) nextOutbound = buildOutbound(next);
    } catch (e) {
      gen.delivery.close();
      throw e;
    }
    const a = current.config.inbound.listen;
    const b = next.inbound.listen;
    let fresh: net.Server | null = null;
    if (a.host !== b.host || a.port !== b.port) {
      try {
        fresh = await listen(b);
      } catch (e) {
        gen.delivery.close();
        nextOutbound?.close();
        throw new Error(`cannot listen on ${b.host}:${b.port}: ${(e as Error).message}`);
      }
    }
    let done = false;
    return {
      restartNeeded,
      activate() {
        if (done) return;
        done = true;
        const old = current;
        current = gen;
        signatures = db;
        gen.policy.takeOver();
        generations.add(gen);
        if (old.server.connections.size === 0) generations.delete(old);
        queue!.reconfigure(next, gen.delivery, nextOutbound ?? undefined);
        if (nextOutbound) outbound = nextOutbound;
        log.level = next.log.level;
        if (fresh) {
          const was = listener;
          listener = fresh;
          listeners.delete(was);
          retired.push(new Promise<void>((resolve) => was.close(() => resolve()))); // sessions on it go on; only new connections stop
          log.info({ ev: 'listening', address: b.host, port: bound() }, 'listening');
        }
        log.info({ ev: 'config-applied', localDomains: next.inbound.localDomains.length, restartNeeded }, 'configuration applied');
        void networkFiles(next);
      },
      discard() {
        if (done) return;
        done = true;
        gen.delivery.close();
        nextOutbound?.close();
        if (fresh) {
          listeners.delete(fresh);
          fresh.close();
        }
      },
    };
  };

  const daemon: Daemon = {
    get port() {
      return bound();
    },
    get scan() {
      return current.scan;
    },
    async reloadSignatures() {
      await current.scan.reloadSignatures();
      signatures = current.scan.database;
    },
    spool,
    queue,
    health,
    monitor,
    get transactions() {
      return transactions;
    },
    get config() {
      return current.config;
    },
    prepare,
    async apply(next) {
      (await prepare(next)).activate();
    },
    async close() {
      monitor.stop();
      await daemon.control?.close();
      const closing = [...listeners].map((l) => new Promise<void>((resolve) => l.close(() => resolve())));
      for (const g of generations) g.server.close(() => undefined);
      await Promise.all([...closing, ...retired]);
      await queue!.stop();
      for (const g of generations) g.delivery.close();
      outbound.close();
      current.delivery.close();
      await spool.close();
      log.info({ ev: 'stopped' }, 'stopped');
    },
  };
  if (opts.store) {
    daemon.control = await startControl({
      daemon,
      store: opts.store,
      log,
      ...(opts.ring ? { ring: opts.ring } : {}),
      ...(opts.dnsServers ? { dnsServers: opts.dnsServers } : {}),
      ...(opts.factory !== undefined ? { factory: opts.factory } : {}),
    });
  }
  return daemon;
}
