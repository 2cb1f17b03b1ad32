/*
 * health/watchdog.ts: tells systemd that moatd is ready and alive (sd_notify):
 * READY=1 once started, WATCHDOG=1 every WATCHDOG_USEC/2, so that a hung
 * moatd (an event loop that no longer runs timers) is restarted by systemd.
 *
 * Node has no unix datagram sockets (node:dgram is UDP only), so the message
 * is sent by systemd's own `systemd-notify --no-block`, run with execFile and
 * fixed arguments: nothing from outside goes into its command line (it reads
 * NOTIFY_SOCKET from the environment it inherits). The unit needs
 * NotifyAccess=all, since the sender is a child of moatd. Must never run a
 * shell, and never notify when NOTIFY_SOCKET is unset or WATCHDOG_PID names
 * another process. Called by moatd.ts.
 */
import { execFile } from 'node:child_process';

export type Notifier = { stop(): void };

export function startSdNotify(o: { env?: NodeJS.ProcessEnv; pid?: number; bin?: string; warn?(msg: string): void } = {}): Notifier | null {
  const env = o.env ?? process.env;
  if (!env.NOTIFY_SOCKET) return null;
  const bin = o.bin ?? 'systemd-notify';
  let lastError = '';
  const send = (arg: '--ready' | 'WATCHDOG=1') =>
    execFile(bin, ['--no-block', arg], { env, timeout: 5000 }, (e) => {
      const msg = e ? `${bin} ${arg}: ${e.message.split('\n')[0]}` : '';
      if (msg && msg !== lastError) o.warn?.(msg);
      lastError = msg;
    });
  send('--ready');
  const usec = Number(env.WATCHDOG_USEC);
  const forUs = !env.WATCHDOG_PID || Number(env.WATCHDOG_PID) === (o.pid ?? process.pid);
  if (!Number.isSafeInteger(usec) || usec <= 0 || !forUs) return { stop() {} };
  const timer = setInterval(() => send('WATCHDOG=1'), Math.max(100, Math.floor(usec / 2000)));
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
