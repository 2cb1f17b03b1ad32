/*
 * console/reboot.ts: how the serial console's `reboot` reaches the machine.
 *
 * On the appliance moat-panel runs as an unprivileged user with no D-Bus to
 * ask systemd through, so it only leaves a request file in its runtime
 * directory (`--reboot-request /run/moat-panel/reboot`); a root path unit
 * (board/rootfs/etc/systemd/system/moat-reboot.path) sees it and reboots.
 * Elsewhere it runs `systemctl reboot` directly, and in development mode it
 * only says what it would do.
 *
 * Must never: run anything through a shell, or follow a symbolic link planted
 * where the request file goes (it is created exclusively). Called by
 * moat-panel.ts.
 */
import { execFile } from 'node:child_process';
import { open, unlink } from 'node:fs/promises';

export type RebootOptions = {
  /** The request file a root path unit watches; without it, systemctl reboot. */
  requestFile?: string;
  /** Development mode: only report. */
  dev?: boolean;
  say?: (line: string) => void;
};

export function rebootAction(o: RebootOptions): () => Promise<void> {
  if (o.dev) return async () => o.say?.('development mode: would reboot now');
  const file = o.requestFile;
  if (file) {
    return async () => {
      // a request left from before (the path unit did not run) is replaced, never followed
      await unlink(file).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOENT') throw e;
      });
      const h = await open(file, 'wx', 0o600).catch((e: NodeJS.ErrnoException) => {
        throw new Error(`cannot ask for a reboot (${file}): ${e.code ?? e.message}`);
      });
      try {
        await h.writeFile(`${new Date().toISOString()}\n`);
      } finally {
        await h.close();
      }
    };
  }
  return () => new Promise<void>((resolve, reject) => execFile('systemctl', ['reboot'], (e) => (e ? reject(e) : resolve())));
}
