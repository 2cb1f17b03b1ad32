// A real SMTP server on loopback standing in for the internal mail server.
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import net, { type AddressInfo } from 'node:net';
import { once } from 'node:events';

export type Received = { from: string; to: string[]; body: Buffer; secure: boolean };

export type Sink = {
  port: number;
  messages: Received[];
  /** Every RCPT TO seen, refused or not, and whether the session was under TLS. */
  rcpts: Array<{ address: string; secure: boolean }>;
  connections: number;
  /** Most sessions open at the same time. */
  peakSessions: number;
  /** Resolves when `n` messages have arrived. */
  waitFor(n: number, timeoutMs?: number): Promise<Received[]>;
  close(): Promise<void>;
};

export async function startSink(opts: {
  port?: number;
  host?: string;
  rcpt?: (address: string) => { code: number; message: string } | null;
  data?: () => { code: number; message: string } | null;
  /** Holds each message this long before answering the end of data (a slow server). */
  dataDelayMs?: number;
  server?: Partial<SMTPServerOptions>;
} = {}): Promise<Sink> {
  const messages: Received[] = [];
  const rcpts: Sink['rcpts'] = [];
  let waiters: Array<() => void> = [];
  let connections = 0;
  let open = 0;
  let peakSessions = 0;
  const server = new SMTPServer({
    disableReverseLookup: true,
    authOptional: true,
    logger: false,
    hideSTARTTLS: true,
    ...opts.server,
    onConnect(_s, cb) {
      connections++;
      peakSessions = Math.max(peakSessions, ++open);
      cb();
    },
    onClose() {
      open--;
    },
    onRcptTo(address, session, cb) {
      rcpts.push({ address: address.address, secure: session.secure });
      const r = opts.rcpt?.(address.address);
      if (r) return cb(Object.assign(new Error(r.message), { responseCode: r.code }));
      cb();
    },
    onData(stream, session, cb) {
      const parts: Buffer[] = [];
      stream.on('data', (c: Buffer) => parts.push(c));
      stream.on('end', async () => {
        if (opts.dataDelayMs) await new Promise((r) => setTimeout(r, opts.dataDelayMs));
        const r = opts.data?.();
        if (r) return cb(Object.assign(new Error(r.message), { responseCode: r.code }));
        messages.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((r) => r.address),
          body: Buffer.concat(parts),
          secure: session.secure,
        });
        for (const w of waiters) w();
        cb();
      });
    },
  });
  server.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve());
  });
  const port = (server.server.address() as AddressInfo).port;
  return {
    port,
    messages,
    rcpts,
    get connections() {
      return connections;
    },
    get peakSessions() {
      return peakSessions;
    },
    waitFor(n, timeoutMs = 20_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (messages.length >= n) {
            clearTimeout(t);
            waiters = waiters.filter((w) => w !== check);
            resolve(messages);
          }
        };
        const t = setTimeout(() => {
          waiters = waiters.filter((w) => w !== check);
          reject(new Error(`sink: ${messages.length} of ${n} messages after ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.push(check);
        check();
      });
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

/** A port nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const { createServer } = await import('node:net');
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Accepts TCP connections and never says a word. */
export async function silentServer(at: { host?: string; port?: number } = {}): Promise<{ port: number; connections: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const state = { connections: 0 };
  const server = net.createServer((s) => {
    state.connections++;
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
  });
  server.listen(at.port ?? 0, at.host ?? '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    get connections() {
      return state.connections;
    },
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
