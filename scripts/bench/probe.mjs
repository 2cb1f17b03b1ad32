// The probe client of bench-compare: beside smtp-source's bulk load, a few sessions send
// messages of the workload's size one per connection, each carrying
// `X-Bench-Probe: ID T0` where T0 is performance.now() just before the client sends DATA.
// The timing sink (scripts/bench/timing-sink.mjs, same process, same clock) notes the
// arrival of the final dot, so each probe gives the per-message latency from the client's
// DATA to the internal server, through whatever relay stands between them.
//
// Must never: send anything but to loopback, or retry (a probe not answered 250 is counted
// as refused and has no latency).
// Called by scripts/bench-compare.mjs (and test/bench-timing.test.ts).
import { RawSmtp } from '../../test/helpers/smtp-client.ts';

const DOT = Buffer.from('.\r\n');
const LINE = 'The quick brown fox jumps over the lazy dog; probe text for the relay benchmark 0123\r\n';

/** A body of about `size` bytes, in lines of 86 octets. */
function bodyOf(size) {
  return Buffer.from(LINE.repeat(Math.max(1, Math.ceil(size / LINE.length))));
}

/**
 * Starts `sessions` probe loops against 127.0.0.1:port, each sending one message of
 * about `size` bytes per connection, then pausing `pauseMs`. stop() ends the loops
 * after their current message and resolves to { accepted (ids answered 250), refused,
 * errors }.
 */
export function startProbes(port, { sessions = 1, size = 10_240, pauseMs = 50, from = 'probe@example.net', to = 'probe@example.com', timeoutMs = 120_000 } = {}) {
  const body = bodyOf(size);
  const accepted = new Set();
  const refused = new Map();
  let errors = 0;
  let next = 1;
  let stopped = false;
  const one = async () => {
    const id = next++;
    let c;
    try {
      c = await RawSmtp.open(port);
      await c.reply(timeoutMs);
      await c.cmd('EHLO probe.bench.example.net');
      await c.cmd(`MAIL FROM:<${from}>`);
      const r = await c.cmd(`RCPT TO:<${to}>`);
      if (!r.startsWith('250')) {
        refused.set(r.slice(0, 3), (refused.get(r.slice(0, 3)) ?? 0) + 1);
        return;
      }
      const t0 = performance.now();
      const d = await c.cmd('DATA');
      if (!d.startsWith('354')) {
        refused.set(d.slice(0, 3), (refused.get(d.slice(0, 3)) ?? 0) + 1);
        return;
      }
      // one write: separate small writes would wait for delayed ACKs (Nagle), ~40 ms each
      c.write(Buffer.concat([Buffer.from(`X-Bench-Probe: ${id} ${t0.toFixed(3)}\r\nSubject: probe ${id}\r\nMessage-ID: <probe-${id}@bench.example.net>\r\n\r\n`), body, DOT]));
      const end = await c.reply(timeoutMs);
      if (end.startsWith('250')) accepted.add(id);
      else refused.set(end.slice(0, 3), (refused.get(end.slice(0, 3)) ?? 0) + 1);
      c.write('QUIT\r\n');
    } catch {
      errors++;
    } finally {
      c?.destroy();
    }
  };
  const loop = async () => {
    while (!stopped) {
      await one();
      if (pauseMs) await new Promise((r) => setTimeout(r, pauseMs));
    }
  };
  const loops = Array.from({ length: sessions }, loop);
  return {
    get accepted() {
      return accepted;
    },
    async stop() {
      stopped = true;
      await Promise.all(loops);
      return { accepted, refused, errors };
    },
  };
}

/** The q-quantile (0..1) of a list of numbers, by the nearest-rank method; null when empty. */
export function quantile(xs, q) {
  if (!xs.length) return null;
  const v = [...xs].sort((a, b) => a - b);
  return v[Math.min(v.length - 1, Math.max(0, Math.ceil(q * v.length) - 1))];
}
