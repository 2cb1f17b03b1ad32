// Postfix's smtp-sink standing in for the internal mail server, with its
// running counter (-c) parsed so we know when the last message arrived.
import { startProcess, waitForPort, freePort, sleep } from './proc.mjs';
import { SMTP_SINK } from './postfix.mjs';

/**
 * smtp-sink -c prints "sess=N quit=N mesg=N\r" each time a session ends, a
 * QUIT is executed or a final "." is received; it flushes after every update.
 * It answers every command (all recipients, every DATA) with 2xx by default.
 */
export async function startSink() {
  const port = await freePort();
  let count = 0;
  const reached = [0]; // reached[n] = performance.now() when the counter first showed >= n
  let lastProgressAt = performance.now();
  let partial = '';
  const onStdout = (d) => {
    partial += d;
    const parts = partial.split('\r');
    partial = parts.pop();
    for (let i = parts.length - 1; i >= 0; i--) {
      const m = parts[i].match(/(?:mesg|msg)=(\d+)/);
      if (m) {
        const n = Number(m[1]);
        if (n > count) {
          const now = performance.now();
          for (let k = count + 1; k <= n; k++) reached[k] = now;
          count = n;
          lastProgressAt = now;
        }
        break;
      }
    }
  };
  // -u nobody: required when started as root (drops privileges after bind)
  const args = ['-c', ...(process.getuid?.() === 0 ? ['-u', 'nobody'] : []), `127.0.0.1:${port}`, '1000'];
  const proc = startProcess('smtp-sink', SMTP_SINK, args, { onStdout });
  const ok = await waitForPort(port, { timeoutMs: 15_000, alive: () => !proc.exitInfo });
  if (!ok) {
    await proc.stop();
    throw new Error(`smtp-sink did not listen on 127.0.0.1:${port}: ${proc.stderr.text.trim()}`);
  }
  return {
    port,
    pid: proc.pid,
    get count() {
      return count;
    },
    get lastProgressAt() {
      return lastProgressAt;
    },
    /** performance.now() when the sink had received `n` messages, or null. */
    reachedAt(n) {
      return reached[n] ?? null;
    },
    /** Resolves true when the counter reaches `n`, false when shouldGiveUp() (polled every 50 ms) says so. */
    async waitFor(n, shouldGiveUp) {
      while (count < n) {
        if (proc.exitInfo || shouldGiveUp()) return false;
        await sleep(50);
      }
      return true;
    },
    stop: () => proc.stop(),
    get exitInfo() {
      return proc.exitInfo;
    },
  };
}
