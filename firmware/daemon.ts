/*
 * daemon.ts: assembles moatd from its parts and runs it.
 *
 * Opens the spool (recovering the queue from disk), starts delivery and the
 * inbound listener, and shuts all of it down in order. Takes a validated,
 * frozen Config; reads no globals. Called by moatd.ts (the CLI), the
 * development launcher and the end-to-end tests.
 */
import type { AddressInfo } from 'node:net';
import type { Config } from './config/schema.ts';
import { InternalDelivery } from './delivery/internal.ts';
import type { Logger } from './log/logger.ts';
import { RecipientDirectory } from './policy/recipients.ts';
import { QueueManager } from './queue/manager.ts';
import { Spool } from './queue/spool.ts';
import { createInbound, loadTls } from './smtp/inbound.ts';
import { orderServers } from './delivery/internal.ts';
import { readFileSync } from 'node:fs';
import { ScanService } from './scan/build.ts';
import { DnsResolver } from './dns/resolver.ts';
import { Policy } from './policy/policy.ts';

export type Daemon = {
  port: number;
  /** The scan chain's long-lived part; reloadSignatures() on SIGHUP. */
  scan: ScanService;
  spool: Spool;
  queue: QueueManager;
  close(): Promise<void>;
};

export async function startDaemon(config: Config, log: Logger, opts: { tls?: { key: Buffer; cert: Buffer } } = {}): Promise<Daemon> {
  // signatures first: a configured file that cannot be used stops the start, before anything is opened
  const scan = await ScanService.create(config, log);
  const spool = await Spool.open({
    dataDir: config.storage.dataDir,
    segmentBytes: config.storage.segmentBytes,
    minFreeBytes: config.storage.minFreeBytes,
    syncDelayMs: config.storage.syncDelayMs,
    log,
  });
  const delivery = new InternalDelivery(config, log);
  const queue = new QueueManager({ config, spool, delivery, log });
  const probeTargets = orderServers(config.internal.servers, () => 0).map((s) => ({
    host: s.host,
    port: s.port,
    tls: s.tls,
    rejectUnauthorized: s.verifyCertificate,
    ...(s.caFile ? { ca: readFileSync(s.caFile, 'utf8') } : {}),
    ...(s.servername ? { servername: s.servername } : {}),
  }));
  const recipients = new RecipientDirectory(config.inbound.recipients, () => probeTargets, { heloName: config.hostname });
  // the anti-abuse policy, and the DNS resolver every lookup uses
  const resolver = new DnsResolver(config.dns);
  const policy = new Policy(config, resolver, log);
  const server = createInbound({
    config,
    spool,
    recipients,
    scan,
    log,
    policy,
    accepted: (m) => queue.enqueue(m),
    tls: opts.tls ?? loadTls(config.inbound.tls),
  });
  queue.start();
  const { host, port } = config.inbound.listen;
  await new Promise<void>((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(port, host, () => {
      server.server.off('error', reject);
      resolve();
    });
  });
  const bound = (server.server.address() as AddressInfo).port;
  log.info({ ev: 'listening', address: host, port: bound, queued: spool.messages.size }, 'listening');
  return {
    port: bound,
    scan,
    spool,
    queue,
    async close() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await queue.stop();
      delivery.close();
      await spool.close();
      log.info({ ev: 'stopped' }, 'stopped');
    },
  };
}
