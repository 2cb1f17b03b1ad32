// A timing SMTP sink for bench-compare: stands in for the internal mail server like
// smtp-sink does, and in addition notes when each message's final dot arrived, so that
// probe messages (X-Bench-Probe: ID T0, from scripts/bench/probe.mjs in the same process)
// give a per-message end-to-end latency. It runs inside the benchmark process on raw
// node:net (no SMTP library: it only has to find commands and the end of data, with
// Buffer.indexOf), answers every command with success and advertises PIPELINING as
// smtp-sink does.
//
// Must never: hold a message (only its first bytes, to find the probe header), or keep a
// command line longer than maxLine (the session is closed with 500).
// Called by scripts/bench-compare.mjs (and test/bench-timing.test.ts).
import net from 'node:net';

const TERM = Buffer.from('\r\n.\r\n');
const PROBE = /^X-Bench-Probe: (\d+) (\d+(?:\.\d+)?)\r?$/m;
const HEAD_BYTES = 2048;

/**
 * The SMTP side of one sink session, apart from the socket: feed(chunk) takes the bytes as
 * they came and returns the replies to write ({ out, close, error }); onMessage(head) is
 * called at each final dot with the message's first bytes.
 */
export function sinkSession({ maxLine = 4096, onMessage }) {
  let inData = false;
  let line = Buffer.alloc(0); // an unfinished command line
  let tail = Buffer.alloc(0); // the last bytes of data seen, to find a terminator across chunks
  let head = []; // the first bytes of the message
  let headLen = 0;
  let closed = false;

  const command = (cmd) => {
    const verb = cmd.slice(0, 4).toUpperCase();
    if (verb === 'EHLO') return '250-sink.bench.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 209715200\r\n';
    if (verb === 'DATA') {
      inData = true;
      tail = Buffer.from('\r\n'); // a message may be empty: "." right after the 354
      head = [];
      headLen = 0;
      return '354 go ahead\r\n';
    }
    if (verb === 'QUIT') return '221 bye\r\n';
    return '250 ok\r\n';
  };

  const feed = (chunk) => {
    let out = '';
    let rest = chunk;
    if (closed) return { out, close: true };
    while (rest.length) {
      if (inData) {
        // the terminator may start in the bytes kept from the previous chunk
        const joined = Buffer.concat([tail, rest.subarray(0, TERM.length - 1)]);
        let end = -1;
        const across = joined.indexOf(TERM);
        if (across >= 0) end = across + TERM.length - tail.length;
        else {
          const i = rest.indexOf(TERM);
          if (i >= 0) end = i + TERM.length;
        }
        const body = end >= 0 ? rest.subarray(0, end) : rest;
        if (headLen < HEAD_BYTES) {
          const h = body.subarray(0, HEAD_BYTES - headLen);
          head.push(Buffer.from(h));
          headLen += h.length;
        }
        if (end < 0) {
          tail = Buffer.concat([tail, rest]).subarray(-(TERM.length - 1));
          break;
        }
        inData = false;
        onMessage(Buffer.concat(head));
        head = [];
        out += '250 2.0.0 Ok: queued\r\n';
        rest = rest.subarray(end);
        continue;
      }
      const nl = rest.indexOf(0x0a);
      if (nl < 0) {
        line = Buffer.concat([line, rest]);
        if (line.length > maxLine) {
          closed = true;
          return { out: out + '500 5.5.2 line too long\r\n', close: true, error: 'command line too long' };
        }
        break;
      }
      const cmd = Buffer.concat([line, rest.subarray(0, nl)]).toString('latin1').replace(/\r$/, '');
      line = Buffer.alloc(0);
      rest = rest.subarray(nl + 1);
      if (cmd.length > maxLine) {
        closed = true;
        return { out: out + '500 5.5.2 line too long\r\n', close: true, error: 'command line too long' };
      }
      out += command(cmd);
      if (cmd.slice(0, 4).toUpperCase() === 'QUIT') {
        closed = true;
        return { out, close: true };
      }
    }
    return { out, close: false };
  };
  return { greeting: '220 sink.bench.test ESMTP\r\n', feed };
}

/**
 * Starts the sink on host:0. Returns { port, count, probes (Map id → latency ms),
 * lastProgressAt, reachedAt(n), waitFor(n, giveUp), stop() }.
 */
export async function startTimingSink({ host = '127.0.0.1', maxLine = 4096 } = {}) {
  let count = 0;
  let lastProgressAt = performance.now();
  const reached = [0];
  const probes = new Map();
  const sockets = new Set();
  const errors = [];

  const delivered = (head) => {
    const now = performance.now();
    count++;
    reached[count] = now;
    lastProgressAt = now;
    const m = PROBE.exec(head.toString('latin1'));
    if (m) probes.set(Number(m[1]), now - Number(m[2]));
  };

  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => undefined);
    sock.setNoDelay(true);
    const session = sinkSession({ maxLine, onMessage: delivered });
    sock.write(session.greeting);
    sock.on('data', (chunk) => {
      const { out, close, error } = session.feed(chunk);
      if (error) errors.push(error);
      if (close) sock.end(out);
      else if (out) sock.write(out);
    });
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, resolve);
  });
  const port = server.address().port;
  return {
    port,
    get count() {
      return count;
    },
    get lastProgressAt() {
      return lastProgressAt;
    },
    /** Probe id → milliseconds from the probe client's DATA to this sink's final dot. */
    probes,
    /** Sessions closed for a command line over maxLine. */
    errors,
    reachedAt: (n) => reached[n] ?? null,
    /** Resolves true once `n` messages arrived, false when giveUp() (polled every 50 ms) says so. */
    async waitFor(n, giveUp = () => false) {
      while (count < n) {
        if (giveUp()) return false;
        await new Promise((r) => setTimeout(r, 50));
      }
      return true;
    },
    stop: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
