/*
 * health/monitor.ts: the health model. Turns its inputs (listener up, each
 * internal server answering a greeting, queue size and oldest age, DNS
 * answering, data partition free space and writability, the faults the parts
 * raised (configuration recovered or not applied), certificate expiry, clamd
 * answering when configured, the system clock synchronised when configured) into one state, booting | ok | degraded | fault,
 * with the reasons for it.
 *
 * evaluate() is the model itself, a pure function; HealthMonitor runs the
 * probes (health/probes.ts) every health.intervalMs and keeps the last
 * result. Must never decide anything about mail (it only reports) and never
 * probe with a message. Built by daemon.ts; read by control/server.ts
 * (`status`), hence by the console's `show status` and the LEDs of moat-panel.
 */
import type { Config } from '../config/schema.ts';
import type { Fault } from './health.ts';
import { certificateExpiry, probeClamd, probeClockSync, probeDisk, probeDns, probeSmtp, type ProbeResult } from './probes.ts';

export type HealthState = 'booting' | 'ok' | 'degraded' | 'fault';
export type Reason = { code: string; level: 'degraded' | 'fault'; message: string };

/** One round of observations; everything evaluate() needs. */
export type Observations = {
  listening: boolean;
  faults: Fault[];
  servers: Array<{ name: string; result: ProbeResult }>;
  queue: { total: number; oldestAgeMs: number };
  dns: ProbeResult;
  disk: { writable: ProbeResult; freeBytes: number | null };
  certificate: { file: string; notAfter?: Date; error?: string; now: Date } | null;
  clamd: ProbeResult | null;
  /** health.clockSyncFile's verdict; null when not configured. */
  clock?: ProbeResult | null;
};

export type HealthReport = { state: HealthState; reasons: Reason[]; checkedAt: string | null };

const DAY = 86_400_000;

/** The model: observations and thresholds in, state and reasons out. Faults first, then degradations. */
export function evaluate(o: Observations, config: Config): { state: Exclude<HealthState, 'booting'>; reasons: Reason[] } {
  const h = config.health;
  const reasons: Reason[] = [];
  const fault = (code: string, message: string) => reasons.push({ code, level: 'fault', message });
  const degraded = (code: string, message: string) => reasons.push({ code, level: 'degraded', message });

  if (!o.listening) fault('listener-down', `not listening on ${config.inbound.listen.host}:${config.inbound.listen.port}`);
  for (const f of o.faults) fault(f.code, f.message);
  if (!o.disk.writable.ok) fault('spool-unwritable', o.disk.writable.detail);
  if (o.disk.freeBytes !== null && o.disk.freeBytes < config.storage.minFreeBytes)
    fault('disk-full', `${o.disk.freeBytes} bytes free on the data partition, below storage.minFreeBytes (${config.storage.minFreeBytes}): new mail is refused`);
  else if (o.disk.freeBytes !== null && o.disk.freeBytes < h.lowFreeBytes) degraded('disk-low', `${o.disk.freeBytes} bytes free on the data partition, below health.lowFreeBytes (${h.lowFreeBytes})`);

  for (const s of o.servers) if (!s.result.ok) degraded('internal-unreachable', `internal server ${s.result.detail}`);
  if (o.queue.total >= h.queueMessages) degraded('queue-backlog', `${o.queue.total} messages queued (health.queueMessages is ${h.queueMessages})`);
  if (o.queue.total > 0 && o.queue.oldestAgeMs >= h.queueAgeMs)
    degraded('queue-old', `the oldest queued message waits for ${Math.round(o.queue.oldestAgeMs / 1000)} s (health.queueAgeMs is ${h.queueAgeMs})`);
  if (!o.dns.ok) degraded('dns-failing', `DNS is not answering: ${o.dns.detail}`);
  if (o.certificate) {
    const c = o.certificate;
    if (c.error) degraded('certificate-unreadable', c.error);
    else if (c.notAfter) {
      const left = c.notAfter.getTime() - c.now.getTime();
      if (left <= 0) degraded('certificate-expired', `the TLS certificate ${c.file} expired on ${c.notAfter.toISOString()}`);
      else if (left < h.certWarnDays * DAY)
        degraded('certificate-expiring', `the TLS certificate ${c.file} expires on ${c.notAfter.toISOString()} (in ${Math.floor(left / DAY)} days)`);
    }
  }
  if (o.clamd && !o.clamd.ok) degraded('clamd-unreachable', o.clamd.detail);
  if (o.clock && !o.clock.ok) degraded('clock-unsynchronised', o.clock.detail);

  const state = reasons.some((r) => r.level === 'fault') ? 'fault' : reasons.length ? 'degraded' : 'ok';
  return { state, reasons };
}

export type MonitorInputs = {
  config(): Config;
  listening(): boolean;
  faults(): Fault[];
  /** Queued messages and the arrival time (ms since the epoch) of the oldest, if any. */
  queue(): { total: number; oldestArrivedAt: number | null };
  now?: () => Date;
};

export class HealthMonitor {
  readonly #in: MonitorInputs;
  readonly #now: () => Date;
  #last: { state: Exclude<HealthState, 'booting'>; reasons: Reason[]; at: Date } | null = null;
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<HealthReport> | null = null;
  #stopped = false;

  constructor(inputs: MonitorInputs) {
    this.#in = inputs;
    this.#now = inputs.now ?? (() => new Date());
  }

  /** Probes now (a round already running is joined) and returns the new report. */
  check(): Promise<HealthReport> {
    this.#running ??= this.#round().finally(() => (this.#running = null));
    return this.#running;
  }

  /** Starts the periodic rounds; the first runs at once. */
  start(): void {
    const loop = () => {
      void this.check().finally(() => {
        if (!this.#stopped) this.#timer = setTimeout(loop, this.#in.config().health.intervalMs).unref();
      });
    };
    loop();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
  }

  /**
   * The current report. Probe results are those of the last round; the cheap
   * inputs (listener, raised faults, queue) are read afresh, so a raised
   * fault shows at once. Before the first round the state is booting.
   */
  report(): HealthReport {
    if (!this.#last) return { state: 'booting', reasons: [], checkedAt: null };
    const config = this.#in.config();
    const fresh = evaluate({ ...this.#observed!, listening: this.#in.listening(), faults: this.#in.faults(), queue: this.#queue() }, config);
    return { ...fresh, checkedAt: this.#last.at.toISOString() };
  }

  #observed: Observations | null = null;

  #queue(): Observations['queue'] {
    const q = this.#in.queue();
    return { total: q.total, oldestAgeMs: q.oldestArrivedAt === null ? 0 : Math.max(0, this.#now().getTime() - q.oldestArrivedAt) };
  }

  async #round(): Promise<HealthReport> {
    const config = this.#in.config();
    const t = config.health.probeTimeoutMs;
    const [servers, dns, disk, certificate, clamd, clock] = await Promise.all([
      Promise.all(config.internal.servers.map(async (s) => ({ name: `${s.host}:${s.port}`, result: await probeSmtp(s.host, s.port, t) }))),
      probeDns(config.dns, config.inbound.localDomains[0]!, t),
      probeDisk(config.storage.dataDir),
      config.inbound.tls ? certificateExpiry(config.inbound.tls.certFile).then((c) => ({ file: config.inbound.tls!.certFile, ...c, now: this.#now() })) : Promise.resolve(null),
      config.scan.clamd ? probeClamd(config.scan.clamd.address, t) : Promise.resolve(null),
      config.health.clockSyncFile ? probeClockSync(config.health.clockSyncFile) : Promise.resolve(null),
    ]);
    this.#observed = { listening: this.#in.listening(), faults: this.#in.faults(), servers, queue: this.#queue(), dns, disk, certificate, clamd, clock };
    const r = evaluate(this.#observed, config);
    this.#last = { ...r, at: this.#now() };
    return { ...r, checkedAt: this.#last.at.toISOString() };
  }
}
