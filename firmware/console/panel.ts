/*
 * console/panel.ts: moat-panel's serial console: opens console.device at
 * console.baudRate, 8N1, with serialport, and runs a Console (session.ts) on it
 * that talks to moatd over control.socket.
 *
 * Reads the configuration file (the store's running file, never written here)
 * at start for the device, the socket and the host name, and at each login for
 * the administrator's password hash. A port that fails or goes away is opened
 * again every RETRY_MS. Must never write the configuration itself (changes go
 * through moatd's control socket) and never echo a password. Called by
 * moat-panel.ts; tests run it in-process on a socat pseudo-terminal pair.
 */
import { readFile } from 'node:fs/promises';
import { SerialPort } from 'serialport';
import { parseConfig, type Config } from '../config/schema.ts';
import { ControlClient } from '../control/client.ts';
import type { LockoutOptions } from './auth.ts';
import { Console } from './session.ts';

const RETRY_MS = 2000;

/*
 * Note on serialport 13 (bindings-cpp poller.cpp, Poller::poll): it records the
 * events it waits for but starts the poll with the newest event alone, so while
 * a write waits for room (EAGAIN) the port is not polled for input. On a UART the
 * output drains at line rate and reading resumes; the console keeps its output
 * small (echo, cursor sequences, redraws of the line's tail only) so writes
 * rarely wait at all.
 */

export type PanelOptions = {
  configPath: string;
  /** Overrides console.device (tests, development). */
  device?: string;
  lockout?: LockoutOptions;
  reboot(): Promise<void>;
  /** Told about port trouble (moat-panel prints it). */
  warn?(msg: string): void;
};

export type Panel = { console: Console; /** A line on the console from outside the session (the button's). */ print(line: string): void; close(): Promise<void> };

async function readConfig(path: string): Promise<Config> {
  return parseConfig(JSON.parse(await readFile(path, 'utf8')));
}

export async function startPanel(o: PanelOptions): Promise<Panel> {
  const config = await readConfig(o.configPath);
  const device = o.device ?? config.console.device;
  let port: SerialPort | null = null;
  let closed = false;
  let retry: NodeJS.Timeout | null = null;

  const con = new Console({
    write: (s) => {
      if (port?.isOpen) port.write(s);
    },
    hostname: () => config.hostname,
    readAdmin: async () => {
      const c = await readConfig(o.configPath);
      return { ...(c.admin.passwordHash ? { passwordHash: c.admin.passwordHash } : {}), mustChangePassword: c.admin.mustChangePassword };
    },
    connect: () => ControlClient.connect(config.control.socket),
    idleTimeoutMs: config.console.idleTimeoutMs,
    pageLines: config.console.pageLines,
    reboot: o.reboot,
    ...(o.lockout ? { lockout: o.lockout } : {}),
  });

  const open = () =>
    new Promise<void>((resolve) => {
      const p = new SerialPort({ path: device, baudRate: config.console.baudRate, dataBits: 8, parity: 'none', stopBits: 1, autoOpen: false });
      p.open((err) => {
        if (err) {
          o.warn?.(`cannot open ${device}: ${err.message}`);
          schedule();
          return resolve();
        }
        port = p;
        p.on('data', (d: Buffer) => con.feed(d));
        p.on('error', (e) => o.warn?.(`${device}: ${e.message}`));
        p.on('close', () => {
          if (port === p) port = null;
          if (!closed) schedule();
        });
        resolve();
      });
    });
  const schedule = () => {
    if (closed || retry) return;
    retry = setTimeout(() => {
      retry = null;
      void open();
    }, RETRY_MS);
  };
  await open();
  return {
    console: con,
    print(line: string) {
      if (port?.isOpen) port.write(`\r\n${line}\r\n`);
    },
    async close() {
      closed = true;
      if (retry) clearTimeout(retry);
      con.close();
      const p = port;
      port = null;
      if (p?.isOpen) await new Promise<void>((r) => p.close(() => r()));
    },
  };
}
