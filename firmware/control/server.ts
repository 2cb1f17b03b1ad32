/*
 * control/server.ts: moatd's control socket.
 *
 * A unix socket (mode 0660, in a directory of mode 0750: who may use it is
 * decided by the file system) speaking control/protocol.ts. Commands:
 *   status · queue.list|flush|hold|release|delete · config.get|set|delete|
 *   compare|commit|confirm|discard|rollback|revisions · log.tail ·
 *   test.delivery · dns.mx · system.factoryReset
 * Each connection has its own candidate configuration (a copy of the running
 * document made at its first change); commit validates it, builds and binds
 * what it needs (daemon.prepare), writes it through the store, and only then
 * switches moatd to it. One commit at a time. `commit` with confirmMs rolls
 * back by itself unless `config.confirm` (or another commit) comes first; the
 * timer lives here in moatd, so a console that goes away changes nothing.
 *
 * Must never: write configuration except through ConfigStore.commit/rollback;
 * switch to a configuration the store has not written; return or log the
 * administrator's password hash (shown as "[secret]"); hold a request line
 * over MAX_REQUEST_BYTES; serve more than MAX_CLIENTS connections; queue more
 * than MAX_QUEUED requests or unread responses of one connection (it is paused).
 * Called by daemon.ts; clients are control/client.ts users.
 */
import { randomBytes } from 'node:crypto';
import { Resolver } from 'node:dns/promises';
import { chmod, mkdir, unlink } from 'node:fs/promises';
import net from 'node:net';
import { dirname } from 'node:path';
import { diffDocuments, type ConfigStore } from '../config/store.ts';
import { parseConfig, ConfigError, type Config } from '../config/schema.ts';
import { deleteAt, formatSettingPath, getAt, parseSettingPath, PathError, setAt, settingAt } from '../config/paths.ts';
import type { Logger } from '../log/logger.ts';
import type { LogRing } from '../log/ring.ts';
import { parsePath } from '../policy/address.ts';
import { QueueAdminError } from '../queue/manager.ts';
import type { Daemon } from '../daemon.ts';
import { LineReader, MAX_REQUEST_BYTES, PROTOCOL_VERSION, type ErrorCode, type Request, type Response } from './protocol.ts';

export const MAX_CLIENTS = 8;
/** Commands that change nothing and may answer out of order (the client matches answers by id). */
const READ_ONLY = /^\s*\{[^{]*"cmd"\s*:\s*"(status|dns\.mx|log\.tail|queue\.list|config\.revisions)"/;
/** Requests of one connection waiting for their turn before it is paused. */
const MAX_QUEUED = 32;
const MAX_CONFIRM_MS = 24 * 3_600_000;

export type ControlDeps = {
  daemon: Daemon;
  store: ConfigStore<Config>;
  log: Logger;
  ring?: LogRing;
  dnsServers?: string[];
  factory?: unknown;
};

export type ControlServer = { path: string; close(): Promise<void> };

class CommandError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

const SECRET = '[secret]';

/** The document with the administrator's password hash hidden; `before`: mark it "(changed)" when it differs from that document's. */
function redact(doc: unknown, before?: unknown): unknown {
  const hash = getAt(doc, ['admin', 'passwordHash']);
  if (hash === undefined) return doc;
  const changed = before !== undefined && getAt(before, ['admin', 'passwordHash']) !== hash;
  return setAt(doc, ['admin', 'passwordHash'], changed ? `${SECRET} (changed)` : SECRET);
}

type Session = { candidate: unknown | null };

export async function startControl(deps: ControlDeps): Promise<ControlServer> {
  const { daemon, store, log } = deps;
  const path = daemon.config.control.socket;
  const started = Date.now();
  // event-loop delay since the previous status (a stall of the one JS thread shows here first):
  // a 20 ms ticker records how late each tick came (perf_hooks' histogram loses the first
  // sample after a reset, which is exactly the stall one wants to see)
  const TICK_MS = 20;
  const lateness: number[] = [];
  let lastTick = performance.now();
  const ticker = setInterval(() => {
    const now = performance.now();
    if (lateness.length < 10_000) lateness.push(Math.max(0, now - lastTick - TICK_MS));
    lastTick = now;
  }, TICK_MS);
  ticker.unref();
  let commitChain: Promise<unknown> = Promise.resolve();
  let pending: { revision: number; previous: number; at: number; timer: NodeJS.Timeout } | null = null;

  const serial = <R>(fn: () => Promise<R>): Promise<R> => {
    const run = commitChain.then(fn, fn);
    commitChain = run.catch(() => undefined);
    return run;
  };

  const cancelPending = () => {
    if (pending) clearTimeout(pending.timer);
    pending = null;
  };

  /** Validates, prepares, writes through the store, then switches. */
  const commitDocument = async (doc: unknown, write: () => Promise<number>) => {
    let config: Config;
    try {
      config = parseConfig(doc);
    } catch (e) {
      if (e instanceof ConfigError) throw new CommandError('invalid-config', e.message);
      throw e;
    }
    let prepared;
    try {
      prepared = await daemon.prepare(config);
    } catch (e) {
      throw new CommandError('failed', `cannot apply: ${(e as Error).message}`);
    }
    let revision: number;
    try {
      revision = await write();
    } catch (e) {
      prepared.discard();
      if (e instanceof ConfigError) throw new CommandError('invalid-config', e.message);
      throw new CommandError('failed', `commit failed: ${(e as Error).message}`);
    }
    prepared.activate(); // the store logged the commit (config-commit), the daemon the switch (config-applied)
    return { revision, restartNeeded: prepared.restartNeeded };
  };

  const rollbackTo = (target: number | { back: number }, user: string) =>
    serial(async () => {
      let rev;
      try {
        rev = await store.revisionDocument(target);
      } catch (e) {
        throw new CommandError('not-found', (e as Error).message);
      }
      cancelPending();
      return commitDocument(rev.config, () => store.rollback(rev.revision, { user }));
    });

  const str = (args: Record<string, unknown>, k: string, max = 1000): string => {
    const v = args[k];
    if (typeof v !== 'string' || v.length === 0) throw new CommandError('bad-request', `${k}: expected a string`);
    if (v.length > max) throw new CommandError('bad-request', `${k}: longer than ${max} characters`);
    return v;
  };
  const int = (args: Record<string, unknown>, k: string, dflt: number, min: number, max: number): number => {
    const v = args[k] ?? dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new CommandError('bad-request', `${k}: expected a whole number from ${min} to ${max}`);
    return v;
  };
  const settingPath = (args: Record<string, unknown>) => {
    const p = args.path ?? '';
    if (typeof p !== 'string') throw new CommandError('bad-request', 'path: expected a string');
    try {
      const parts = parseSettingPath(p);
      settingAt(parts);
      return parts;
    } catch (e) {
      throw new CommandError('not-found', (e as Error).message);
    }
  };
  const user = (args: Record<string, unknown>) => (typeof args.user === 'string' && /^[\w.@-]{1,64}$/.test(args.user) ? args.user : 'control');

  const commands: Record<string, (args: Record<string, unknown>, s: Session) => Promise<unknown> | unknown> = {
    status: () => ({
      hostname: daemon.config.hostname,
      uptimeSeconds: Math.round((Date.now() - started) / 1000),
      listen: `${daemon.config.inbound.listen.host}:${daemon.port}`,
      localDomains: daemon.config.inbound.localDomains,
      health: daemon.health.state,
      faults: daemon.health.list(),
      ...(({ state, reasons, checkedAt }) => ({ state, reasons, checkedAt }))(daemon.monitor.report()),
      transactions: daemon.transactions,
      eventLoopDelayMs: (() => {
        const sorted = lateness.splice(0).sort((a, b) => a - b);
        const at = (q: number) => Math.round((sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0) * 100) / 100;
        return { p50: at(0.5), p99: at(0.99), max: at(1) };
      })(),
      queue: { ...daemon.queue.stats(), total: daemon.spool.messages.size },
      signatures: daemon.scan.signatures,
      config: {
        revision: store.runningRevision,
        ...(pending ? { confirmBy: new Date(pending.at).toISOString(), rollbackTo: pending.previous } : {}),
      },
    }),
    'signatures.reload': async () => {
      try {
        await daemon.reloadSignatures();
      } catch (e) {
        throw new CommandError('failed', `signatures not reloaded, the previous set stays: ${(e as Error).message}`);
      }
      log.info({ ev: 'signatures-reloaded', ...daemon.scan.signatures }, 'signatures reloaded');
      return daemon.scan.signatures ?? { body: 0, hashes: 0 };
    },
    'queue.list': (a) => daemon.queue.list(int(a, 'limit', 100, 1, 1000)),
    'queue.flush': () => {
      daemon.queue.flush();
      return { flushed: true };
    },
    'queue.hold': async (a) => {
      await daemon.queue.hold(str(a, 'id', 64));
      return { held: a.id };
    },
    'queue.release': async (a) => {
      await daemon.queue.release(str(a, 'id', 64));
      return { released: a.id };
    },
    'queue.delete': async (a) => {
      await daemon.queue.delete(str(a, 'id', 64));
      return { deleted: a.id };
    },
    'config.get': (a, s) => {
      const parts = settingPath(a);
      const doc = a.candidate === true && s.candidate !== null ? s.candidate : store.document;
      return { path: formatSettingPath(parts), value: getAt(redact(doc), parts) ?? null };
    },
    'config.set': (a, s) => {
      const parts = settingPath(a);
      if (parts.length === 0) throw new CommandError('bad-request', 'path: name a setting');
      if (!('value' in a)) throw new CommandError('bad-request', 'value: missing');
      const next = setAt(s.candidate ?? store.document, parts, a.value);
      // refuse a value that is wrong in itself; other settings may still be incomplete until commit
      const here = formatSettingPath(parts);
      try {
        parseConfig(next);
      } catch (e) {
        if (!(e instanceof ConfigError)) throw e;
        const mine = e.problems.filter((p) => p.startsWith(here + ':') || p.startsWith(here + '.') || p.startsWith(here + '['));
        if (mine.length) throw new CommandError('invalid-config', mine.join('\n'));
      }
      s.candidate = next;
      return { path: here };
    },
    'config.delete': (a, s) => {
      const parts = settingPath(a);
      try {
        s.candidate = deleteAt(s.candidate ?? store.document, parts);
      } catch (e) {
        if (e instanceof PathError) throw new CommandError('not-found', e.message);
        throw e;
      }
      return { path: formatSettingPath(parts) };
    },
    'config.compare': async (a, s) => {
      const which = async (v: unknown, dflt: 'running' | 'candidate') => {
        const x = v ?? dflt;
        if (x === 'candidate') return s.candidate ?? store.document;
        if (x === 'running') return store.document;
        if (typeof x === 'number') {
          try {
            return (await store.revisionDocument(x)).config;
          } catch (e) {
            throw new CommandError('not-found', (e as Error).message);
          }
        }
        throw new CommandError('bad-request', 'from/to: expected "running", "candidate" or a revision number');
      };
      const from = await which(a.from, 'running');
      const to = await which(a.to, 'candidate');
      return { lines: diffDocuments(redact(from), redact(to, from)) };
    },
    'config.discard': (_a, s) => {
      s.candidate = null;
      return { discarded: true };
    },
    'config.commit': (a, s) =>
      serial(async () => {
        const doc = s.candidate ?? store.document;
        const confirmMs = a.confirmMs === undefined ? 0 : int(a, 'confirmMs', 0, 1, MAX_CONFIRM_MS);
        const comment = typeof a.comment === 'string' ? a.comment.slice(0, 200) : undefined;
        const previous = store.runningRevision;
        const meta = { user: user(a), ...(comment !== undefined ? { comment } : {}) };
        const r = await commitDocument(doc, () => store.commit(doc, meta));
        s.candidate = null;
        cancelPending();
        if (confirmMs && previous !== null) {
          const at = Date.now() + confirmMs;
          const timer = setTimeout(() => {
            if (!pending || pending.revision !== r.revision) return;
            const back = pending.previous;
            pending = null;
            log.warn({ ev: 'config-confirm-timeout', revision: r.revision, rollbackTo: back }, 'commit not confirmed in time: rolling back');
            rollbackTo(back, 'moatd (commit not confirmed)').catch((e: Error) => {
              daemon.health.raise('config-rollback', `automatic rollback to revision ${back} failed: ${e.message}`);
              log.error({ ev: 'config-confirm-rollback-failed', err: e.message }, 'automatic rollback failed');
            });
          }, confirmMs);
          timer.unref();
          pending = { revision: r.revision, previous, at, timer };
          return { ...r, confirmBy: new Date(at).toISOString(), rollbackTo: previous };
        }
        return r;
      }),
    'config.confirm': () => {
      if (!pending) throw new CommandError('not-found', 'no commit is waiting for confirmation');
      const revision = pending.revision;
      cancelPending();
      log.info({ ev: 'config-confirmed', revision }, 'commit confirmed');
      return { confirmed: revision };
    },
    'config.rollback': async (a, s) => {
      const target = typeof a.revision === 'number' ? int(a, 'revision', 0, 1, Number.MAX_SAFE_INTEGER) : { back: int(a, 'back', 1, 0, 1000) };
      const r = await rollbackTo(target, user(a));
      s.candidate = null;
      return r;
    },
    'config.revisions': () => ({ running: store.runningRevision, revisions: store.revisions() }),
    'log.tail': (a) => ({ lines: deps.ring ? deps.ring.tail(int(a, 'lines', 50, 1, 1000)) : [] }),
    'test.delivery': async (a) => {
      const to = str(a, 'to', 254);
      const parsed = parsePath(`<${to}>`, { allowNull: false });
      if (!parsed.ok || !parsed.mailbox) throw new CommandError('bad-request', `to: not a plain address (${parsed.ok ? 'empty' : parsed.refusal})`);
      const cfg = daemon.config;
      const id = `<${Date.now().toString(36)}.${randomBytes(6).toString('hex')}@${cfg.hostname}>`;
      const text =
        `From: moat <postmaster@${cfg.hostname}>\r\nTo: <${parsed.mailbox.address}>\r\nSubject: moat test message\r\n` +
        `Date: ${new Date().toUTCString()}\r\nMessage-ID: ${id}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n` +
        `This is a test message from ${cfg.hostname}, sent from its console.\r\n`;
      const inc = daemon.spool.begin();
      inc.write([Buffer.from(text, 'latin1')]);
      const m = await inc.commit({ from: '', to: [parsed.mailbox.address], arrivedAt: Date.now(), client: { address: '127.0.0.1', helo: cfg.hostname, tls: false }, origin: 'local' });
      daemon.queue.enqueue(m);
      log.info({ ev: 'test-delivery', queueId: m.id, to: parsed.mailbox.address }, 'test message queued');
      return { queueId: m.id, to: parsed.mailbox.address };
    },
    'dns.mx': async (a) => {
      const domain = str(a, 'domain', 253).toLowerCase().replace(/\.$/, '');
      if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/.test(domain)) throw new CommandError('bad-request', 'domain: not a domain name');
      const resolver = new Resolver({ timeout: 3000, tries: 2 });
      // the configured resolver (dns.servers), unless the caller named others
      const servers = deps.dnsServers?.length ? deps.dnsServers : daemon.config.dns.servers;
      if (servers.length) resolver.setServers([...servers]);
      try {
        const mx = (await resolver.resolveMx(domain)).map((r) => ({ exchange: r.exchange, priority: r.priority }));
        mx.sort((x, y) => x.priority - y.priority || x.exchange.localeCompare(y.exchange));
        return { domain, servers: resolver.getServers(), mx };
      } catch (e) {
        const code = (e as { code?: string }).code;
        if (code === 'ENODATA' || code === 'ENOTFOUND') return { domain, servers: resolver.getServers(), mx: [], note: code === 'ENOTFOUND' ? 'no such domain' : 'no MX records (mail goes to the address of the domain itself)' };
        throw new CommandError('failed', `DNS lookup failed: ${code ?? (e as Error).message}`);
      }
    },
    'system.factoryReset': (a, s) => {
      if (deps.factory === undefined) throw new CommandError('not-found', 'no factory configuration on this system');
      const doc = deps.factory;
      return serial(async () => {
        cancelPending();
        const r = await commitDocument(doc, () => store.commit(doc, { user: user(a), comment: 'factory reset' }));
        s.candidate = null;
        return r;
      });
    },
  };

  async function handle(line: string, s: Session): Promise<Response> {
    let req: Request;
    try {
      req = JSON.parse(line) as Request;
    } catch {
      return { v: PROTOCOL_VERSION, id: null, ok: false, error: { code: 'bad-request', message: 'not a JSON object' } };
    }
    if (req === null || typeof req !== 'object' || Array.isArray(req))
      return { v: PROTOCOL_VERSION, id: null, ok: false, error: { code: 'bad-request', message: 'not a JSON object' } };
    const id = typeof req.id === 'number' || (typeof req.id === 'string' && req.id.length <= 64) ? req.id : null;
    const fail = (code: ErrorCode, message: string): Response => ({ v: PROTOCOL_VERSION, id, ok: false, error: { code, message } });
    if (req.v !== PROTOCOL_VERSION) return fail('unsupported-version', `protocol version ${JSON.stringify(req.v)} is not supported; this moatd speaks ${PROTOCOL_VERSION}`);
    if (id === null) return fail('bad-request', 'id: expected a number or a string of up to 64 characters');
    if (typeof req.cmd !== 'string' || !Object.hasOwn(commands, req.cmd)) return fail('unknown-command', `unknown command ${JSON.stringify(String(req.cmd).slice(0, 40))}`);
    const args = req.args ?? {};
    if (args === null || typeof args !== 'object' || Array.isArray(args)) return fail('bad-request', 'args: expected an object');
    try {
      const result = await commands[req.cmd]!(args, s);
      return { v: PROTOCOL_VERSION, id, ok: true, result };
    } catch (e) {
      if (e instanceof CommandError) return fail(e.code, e.message);
      if (e instanceof QueueAdminError) return fail(e.code === 'busy' ? 'busy' : 'not-found', e.message);
      log.error({ ev: 'control-error', cmd: req.cmd, err: (e as Error).message }, 'control command failed');
      return fail('failed', (e as Error).message);
    }
  }

  await mkdir(dirname(path), { recursive: true, mode: 0o750 });
  // a socket file left by a previous moatd: remove it unless someone answers on it
  const alive = await new Promise<boolean>((resolve) => {
    const c = net.connect(path);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
  if (alive) throw new Error(`control socket ${path} is in use by another process`);
  await unlink(path).catch(() => undefined);

  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    if (sockets.size >= MAX_CLIENTS) {
      sock.end(JSON.stringify({ v: PROTOCOL_VERSION, id: null, ok: false, error: { code: 'busy', message: `too many control connections (${MAX_CLIENTS})` } }) + '\n');
      sock.destroySoon();
      return;
    }
    sockets.add(sock);
    sock.once('close', () => sockets.delete(sock));
    sock.on('error', () => undefined);
    const session: Session = { candidate: null };
    let chain = Promise.resolve();
    // backpressure: a client that sends faster than it reads is paused, so nothing queues without bound
    let queued = 0;
    const reader = new LineReader(
      MAX_REQUEST_BYTES,
      (line) => {
        if (++queued >= MAX_QUEUED) sock.pause();
        const answer = async () => {
          const res = await handle(line, session);
          if (!sock.destroyed && !sock.write(JSON.stringify(res) + '\n')) await new Promise((r) => sock.once('drain', r).once('close', r));
          if (--queued < MAX_QUEUED / 2 && sock.isPaused()) sock.resume();
        };
        // read-only commands run at once (a slow DNS lookup must not hold up the session);
        // everything else runs in order, one after the other
        if (READ_ONLY.test(line)) void chain.then(() => undefined).then(answer);
        else chain = chain.then(answer);
      },
      () => {
        void chain.then(() => {
          sock.end(JSON.stringify({ v: PROTOCOL_VERSION, id: null, ok: false, error: { code: 'too-large', message: `request longer than ${MAX_REQUEST_BYTES} bytes` } }) + '\n');
        });
      },
    );
    sock.on('data', (chunk: Buffer) => reader.push(chunk));
  });
  const oldMask = process.umask(0o117);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } finally {
    process.umask(oldMask);
  }
  await chmod(path, 0o660);
  log.info({ ev: 'control-listening', path }, 'control socket ready');
  return {
    path,
    async close() {
      cancelPending();
      clearInterval(ticker);
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      });
      await unlink(path).catch(() => undefined);
    },
  };
}
