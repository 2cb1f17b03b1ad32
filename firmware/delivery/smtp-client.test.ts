// SmtpClient through the wire: a real smtp-server on loopback (and a scripted fake
// server for what a real one does not do), plus the transparency encoder on its own,
// fed every fixture split at every offset and in 1-byte chunks.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net, { type AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import { SmtpClient, SmtpClientError, DotStuffer, type ClientOptions } from './smtp-client.ts';
import { MAX_REPLY_LINE } from './smtp-reply.ts';
import { makePki } from '../../test/helpers/certs.ts';

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;

// ---- the reference: what the server must end up with --------------------------

/** Every bare CR and bare LF becomes CRLF; a non-empty body ends with CRLF. */
function normalise(body: Buffer): Buffer {
  const out: number[] = [];
  for (let i = 0; i < body.length; i++) {
    const b = body[i]!;
    if (b === CR) {
      out.push(CR, LF);
      if (body[i + 1] === LF) i++;
    } else if (b === LF) out.push(CR, LF);
    else out.push(b);
  }
  if (out.length && !(out[out.length - 2] === CR && out[out.length - 1] === LF)) out.push(CR, LF);
  return Buffer.from(out);
}

/** Byte by byte: the normalised body, a "." added at the start of each line that has one, then ".\r\n". */
function referenceEncode(body: Buffer): Buffer {
  const out: number[] = [];
  let bol = true;
  for (const b of normalise(body)) {
    if (bol && b === DOT) out.push(DOT);
    out.push(b);
    bol = b === LF;
  }
  out.push(DOT, CR, LF);
  return Buffer.from(out);
}

function encode(chunks: Buffer[]): Buffer {
  const enc = new DotStuffer();
  const parts = chunks.flatMap((c) => enc.push(c));
  parts.push(enc.end());
  return Buffer.concat(parts);
}

const b = (s: string): Buffer => Buffer.from(s, 'latin1');

const CORPUS: Array<[string, Buffer]> = [
  ['plain message', b('Subject: hello\r\nFrom: a@example.org\r\n\r\nLine one\r\nLine two\r\n')],
  ['lines starting with "." and ".."', b('.\r\n..\r\n.x\r\n..y\r\nz.\r\n...\r\n.')],
  ['a body that is only "."', b('.')],
  ['a body that is only ".\\r\\n"', b('.\r\n')],
  ['a body that is only ".."', b('..')],
  ['a lone CRLF', b('\r\n')],
  ['bare LF', b('a\nb\n.\nc\n\n')],
  ['bare CR', b('a\rb\r.\rc\r\r')],
  ['CR CR LF and LF CR', b('a\r\r\nb\n\r.c\r\n\n.\r')],
  ['smuggling attempts', b('x\n.\ny\r\n.\rz\r.\r\nw\n.\r\nMAIL FROM:<evil@example.net>\r\n\r.\n')],
  ['no final newline', b('Subject: x\r\n\r\nlast line without end')],
  ['ends with a bare CR', b('abc\r')],
  ['ends with a bare LF', b('abc\n')],
  ['empty body', b('')],
  ['8-bit bytes', Buffer.from([0x53, 0x3a, 0x20, 0xe9, 0xff, 0x00, 0x0d, 0x0a, 0x2e, 0x80, 0x0a, 0xc3, 0xa9, 0x0d, 0x0a])],
  ['long line', b('.' + 'x'.repeat(3000) + '\r\n' + 'y'.repeat(5000))],
];

describe('DotStuffer (transparency encoder)', () => {
  for (const [name, body] of CORPUS) {
    test(`${name}: split at every offset, in 1-byte chunks, and whole`, () => {
      const want = referenceEncode(body);
      assert.deepEqual(encode([body]), want, 'whole');
      for (let k = 0; k <= body.length; k++) {
        assert.deepEqual(encode([body.subarray(0, k), body.subarray(k)]), want, `split at ${k}`);
      }
      const bytes = [...body].map((x) => Buffer.from([x]));
      assert.deepEqual(encode(bytes), want, '1-byte chunks');
      assert.deepEqual(encode([Buffer.alloc(0), ...bytes, Buffer.alloc(0)]), want, 'with empty chunks');
      if (body.length <= 40) {
        for (let i = 0; i <= body.length; i++)
          for (let j = i; j <= body.length; j++)
            assert.deepEqual(encode([body.subarray(0, i), body.subarray(i, j), body.subarray(j)]), want, `split at ${i} and ${j}`);
      }
    });
  }

  test('fuzz: random bodies of ".", CR, LF and other bytes, chunked at random, match the reference and are smuggling-safe', () => {
    let seed = 0x9e3779b9;
    const rnd = (n: number): number => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    const alphabet = [DOT, CR, LF, 0x61, 0xff, 0x00];
    for (let round = 0; round < 3000; round++) {
      const body = Buffer.from(Array.from({ length: rnd(64) }, () => alphabet[rnd(alphabet.length)]!));
      const chunks: Buffer[] = [];
      for (let at = 0; at < body.length; ) {
        const n = 1 + rnd(8);
        chunks.push(body.subarray(at, at + n));
        at += n;
      }
      const out = encode(chunks);
      assert.deepEqual(out, referenceEncode(body), `body ${JSON.stringify(body.toString('latin1'))}`);
      // independent of the reference: CR and LF only as CRLF, the only lone "." line is the last
      const text = out.toString('latin1');
      assert.doesNotMatch(text, /\r(?!\n)|(?<!\r)\n/, 'no bare CR or LF');
      const lines = text.split('\r\n');
      assert.equal(lines.pop(), '');
      assert.equal(lines.pop(), '.', 'ends with the end of data');
      for (const l of lines) assert.ok(!l.startsWith('.') || l.startsWith('..'), `line ${JSON.stringify(l)} is stuffed`);
    }
  });

  test('folding: lines over 998 octets are broken with CRLF SPACE, at every split offset, dots still stuffed', () => {
    /** Byte by byte: the reference encoding, with a CRLF SPACE wherever a line would pass 998 octets. */
    const referenceFold = (body: Buffer): Buffer => {
      const out: number[] = [];
      let bol = true;
      let len = 0;
      for (const x of normalise(body)) {
        if (x === CR || x === LF) {
          out.push(x);
          if (x === LF) {
            bol = true;
            len = 0;
          }
          continue;
        }
        if (len === 998) {
          out.push(CR, LF, 0x20);
          len = 1;
        }
        if (bol && x === DOT) out.push(DOT);
        bol = false;
        out.push(x);
        len++;
      }
      out.push(DOT, CR, LF);
      return Buffer.from(out);
    };
    const fold = (chunks: Buffer[]): Buffer => {
      const enc = new DotStuffer(998);
      const parts = chunks.flatMap((c) => enc.push(c));
      parts.push(enc.end());
      return Buffer.concat(parts);
    };
    const body = b('.' + 'x'.repeat(2500) + '\r\n' + 'y'.repeat(997) + '\r\n' + 'z'.repeat(998) + '\n.' + 'w'.repeat(999) + '\r' + 'v'.repeat(1996));
    const want = referenceFold(body);
    for (const line of want.toString('latin1').split('\r\n')) assert.ok(line.length <= 999, `a line of ${line.length} octets`); // 998 + a stuffed dot
    for (let k = 0; k <= body.length; k += 7) assert.deepEqual(fold([body.subarray(0, k), body.subarray(k)]), want, `split at ${k}`);
    assert.deepEqual(fold([...body].map((x) => Buffer.from([x]))), want, '1-byte chunks');
    // without folding, the same body passes unchanged apart from transparency
    assert.deepEqual(encode([body]), referenceEncode(body));
  });

  test('passes chunks on by reference, without copying', () => {
    const line = b('1XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX\r\n');
    const chunk = Buffer.concat(Array.from({ length: 3000 }, () => line));
    const enc = new DotStuffer();
    const parts = enc.push(chunk);
    assert.equal(parts.length, 1);
    assert.equal(parts[0], chunk, 'the very same buffer');
    const dotted = Buffer.concat([line, b('.dot\r\n'), line]);
    const views = new DotStuffer().push(dotted);
    assert.deepEqual(Buffer.concat(views), Buffer.concat([line, b('..dot\r\n'), line]));
    for (const v of views) assert.equal(v.buffer, dotted.buffer, 'views of the chunk');
  });
});

// ---- servers --------------------------------------------------------------------

type Got = { from: string; to: string[]; args: Record<string, unknown>; body: Buffer; secure: boolean };
type Verdict = [number, string] | null;

async function realServer(o: {
  mail?: (a: string) => Verdict;
  rcpt?: (a: string) => Verdict;
  data?: () => Verdict;
  options?: Partial<SMTPServerOptions>;
} = {}) {
  const got: Got[] = [];
  const stats = { connections: 0, dataStarted: 0 };
  const refuse = ([code, msg]: [number, string]) => Object.assign(new Error(msg), { responseCode: code });
  const server = new SMTPServer({
    disableReverseLookup: true,
    authOptional: true,
    logger: false,
    hideSTARTTLS: true,
    size: 50 * 1024 * 1024,
    ...o.options,
    onConnect(_s, cb) {
      stats.connections++;
      cb();
    },
    onMailFrom(a, _s, cb) {
      const r = o.mail?.(a.address);
      cb(r ? refuse(r) : null);
    },
    onRcptTo(a, _s, cb) {
      const r = o.rcpt?.(a.address);
      cb(r ? refuse(r) : null);
    },
    onData(stream, session, cb) {
      stats.dataStarted++;
      const parts: Buffer[] = [];
      stream.on('data', (c: Buffer) => parts.push(c));
      stream.on('end', () => {
        const r = o.data?.();
        if (r) return cb(refuse(r));
        const from = session.envelope.mailFrom;
        got.push({
          from: from ? from.address : '',
          to: session.envelope.rcptTo.map((x) => x.address),
          args: (from && from.args) || {},
          body: Buffer.concat(parts),
          secure: session.secure,
        });
        cb();
      });
    },
  });
  server.on('error', () => undefined);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.server.address() as AddressInfo).port;
  return { port, got, stats, close: () => new Promise<void>((r) => server.close(() => r())) };
}

/**
 * A fake server for what smtp-server does not do. Replies by default as a plain,
 * pipelining server; on(cmd) may return a reply to send instead, or null for none.
 * Everything the client sent is kept in transcript.
 */
async function scripted(o: {
  greeting?: string | null;
  ehlo?: string;
  on?: (cmd: string, s: net.Socket) => string | null | undefined;
  onBodyBytes?: (chunk: Buffer, s: net.Socket) => void;
}) {
  let transcript = '';
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    if (o.greeting !== null) s.write(o.greeting ?? '220 fake ESMTP\r\n');
    let buf = '';
    let inData = false;
    s.on('data', (chunk: Buffer) => {
      transcript += chunk.toString('latin1');
      buf += chunk.toString('latin1');
      for (;;) {
        if (inData) {
          o.onBodyBytes?.(chunk, s);
          const end = buf.startsWith('.\r\n') ? 0 : buf.indexOf('\r\n.\r\n');
          if (end === -1) return;
          buf = buf.slice(end === 0 ? 3 : end + 5);
          inData = false;
          answer('.');
          continue;
        }
        const nl = buf.indexOf('\r\n');
        if (nl === -1) return;
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 2);
        const cmd = line.split(/[ :]/, 1)[0]!.toUpperCase();
        if (answer(cmd) && cmd === 'DATA') inData = true;
      }
    });
    function answer(cmd: string): boolean {
      const custom = o.on?.(cmd, s);
      if (custom === null) return false;
      const defaults: Record<string, string> = {
        EHLO: o.ehlo ?? '250-fake\r\n250 PIPELINING\r\n',
        HELO: '250 fake\r\n',
        DATA: '354 go on\r\n',
        '.': '250 2.0.0 taken\r\n',
        QUIT: '221 bye\r\n',
      };
      const reply = custom ?? defaults[cmd] ?? '250 2.0.0 ok\r\n';
      if (!s.destroyed) s.write(reply, 'latin1');
      if (cmd === 'QUIT') s.end();
      return reply.startsWith('354');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    transcript: () => transcript,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

function opts(port: number, more: Partial<ClientOptions> = {}): ClientOptions {
  return {
    host: '127.0.0.1',
    port,
    heloName: 'moat.example.com',
    tls: 'none',
    rejectUnauthorized: true,
    connectTimeoutMs: 2_000,
    commandTimeoutMs: 2_000,
    ...more,
  };
}

function body(...chunks: Array<string | Buffer>): Readable {
  return Readable.from(chunks.map((c) => (typeof c === 'string' ? b(c) : c)));
}

async function rejectsWith(p: Promise<unknown>, code: string, message?: RegExp): Promise<SmtpClientError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof SmtpClientError, `a SmtpClientError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (message) assert.match(e.message, message);
    return e;
  }
  assert.fail(`expected a rejection with ${code}`);
}

// ---- through the wire -------------------------------------------------------------

describe('SmtpClient against smtp-server', () => {
  test('envelope and body arrive byte for byte for every body of the corpus, chunked three ways, over one reused connection', async () => {
    const srv = await realServer();
    const c = await SmtpClient.connect(opts(srv.port));
    try {
      assert.ok(c.extensions.has('PIPELINING') && c.extensions.has('8BITMIME') && c.extensions.has('SIZE'));
      assert.equal(c.secure, false);
      let n = 0;
      for (const [name, raw] of CORPUS) {
        const chunkings: Buffer[][] = [[raw], [raw.subarray(0, raw.length >> 1), raw.subarray(raw.length >> 1)], [...raw].map((x) => Buffer.from([x]))];
        for (const chunks of chunkings) {
          const r = await c.send({ from: 'alice@example.org', to: ['bob@example.com', 'carol@example.com'], size: raw.length, eightBit: true }, body(...chunks));
          assert.equal(r.mail.code, 250);
          assert.deepEqual(r.rcpts.map((x) => x.code), [250, 250]);
          assert.equal(r.data?.code, 250, `${name}: ${r.data?.text}`);
          const m = srv.got[n++]!;
          assert.equal(m.from, 'alice@example.org');
          assert.deepEqual(m.to, ['bob@example.com', 'carol@example.com']);
          assert.deepEqual(m.args, { SIZE: String(raw.length), BODY: '8BITMIME' });
          assert.equal(m.body.toString('latin1'), normalise(raw).toString('latin1'), name);
          await c.reset();
        }
      }
      assert.equal(srv.stats.connections, 1, 'one connection for all of them');
      assert.equal(c.usable, true);
    } finally {
      await c.quit();
      await srv.close();
    }
  });

  test('a 1 MiB body in odd-sized chunks with dot lines every few lines', async () => {
    const srv = await realServer();
    const c = await SmtpClient.connect(opts(srv.port));
    try {
      const lines: string[] = [];
      for (let i = 0, len = 0; len < 1 << 20; i++) {
        const l = i % 7 === 0 ? `.${i}\r\n` : i % 11 === 0 ? `bare ${i}\n` : `line ${i} ${'x'.repeat(i % 90)}\r\n`;
        lines.push(l);
        len += l.length;
      }
      const raw = b(lines.join(''));
      const chunks: Buffer[] = [];
      for (let at = 0, k = 1; at < raw.length; at += k, k = (k * 7 + 13) % 70_001) chunks.push(raw.subarray(at, at + k));
      const r = await c.send({ from: '', to: ['bob@example.com'] }, body(...chunks));
      assert.equal(r.data?.code, 250);
      assert.equal(srv.got[0]!.from, '', 'the null sender');
      assert.ok(srv.got[0]!.body.equals(normalise(raw)));
    } finally {
      await c.quit();
      await srv.close();
    }
  });

  for (const pipelining of [true, false]) {
    const mode = pipelining ? 'with PIPELINING' : 'without PIPELINING';
    const options: Partial<SMTPServerOptions> = { hidePIPELINING: !pipelining };

    test(`per-recipient replies ${mode}: one 550, one 451, one accepted`, async () => {
      const srv = await realServer({
        options,
        rcpt: (a) => (a.startsWith('ghost') ? [550, '5.1.1 no such user'] : a.startsWith('busy') ? [451, '4.2.0 mailbox busy'] : null),
      });
      const c = await SmtpClient.connect(opts(srv.port));
      try {
        assert.equal(c.extensions.has('PIPELINING'), pipelining);
        const r = await c.send({ from: 'a@example.org', to: ['ghost@example.com', 'busy@example.com', 'bob@example.com'] }, body('hi\r\n'));
        assert.equal(r.mail.code, 250);
        assert.deepEqual(r.rcpts.map((x) => x.code), [550, 451, 250]);
        assert.match(r.rcpts[0]!.text, /^550 5\.1\.1 no such user$/);
        assert.match(r.rcpts[1]!.text, /^451 4\.2\.0 mailbox busy$/);
        assert.equal(r.data?.code, 250);
        assert.deepEqual(srv.got.map((m) => m.to), [['bob@example.com']]);
      } finally {
        await c.quit();
        await srv.close();
      }
    });

    test(`all recipients refused ${mode}: no data is sent, and the connection stays usable`, async () => {
      const srv = await realServer({ options, rcpt: (a) => (a === 'ok@example.com' ? null : [550, '5.1.1 unknown']) });
      const c = await SmtpClient.connect(opts(srv.port));
      try {
        const r = await c.send({ from: 'a@example.org', to: ['x@example.com', 'y@example.com'] }, body('secret\r\n'));
        assert.equal(r.data, null);
        assert.deepEqual(r.rcpts.map((x) => x.code), [550, 550]);
        assert.equal(srv.stats.dataStarted, 0, 'the server never saw data');
        await c.reset();
        const again = await c.send({ from: 'a@example.org', to: ['ok@example.com'] }, body('second\r\n'));
        assert.equal(again.data?.code, 250);
        assert.equal(srv.got.length, 1);
        assert.equal(srv.got[0]!.body.toString(), 'second\r\n');
      } finally {
        await c.quit();
        await srv.close();
      }
    });

    test(`MAIL refused ${mode}`, async () => {
      const srv = await realServer({ options, mail: (a) => (a === 'spam@example.org' ? [550, '5.7.1 go away'] : null) });
      const c = await SmtpClient.connect(opts(srv.port));
      try {
        const r = await c.send({ from: 'spam@example.org', to: ['bob@example.com'] }, body('x\r\n'));
        assert.equal(r.mail.code, 550);
        assert.match(r.mail.text, /go away/);
        assert.deepEqual(r.rcpts, []);
        assert.equal(r.data, null);
        assert.equal(srv.stats.dataStarted, 0);
        await c.reset();
        assert.equal((await c.send({ from: 'ok@example.org', to: ['bob@example.com'] }, body('x\r\n'))).data?.code, 250);
      } finally {
        await c.quit();
        await srv.close();
      }
    });
  }

  for (const [code, text] of [
    [554, '5.6.0 content refused'],
    [451, '4.3.0 try again later'],
  ] as const) {
    test(`a ${code} to the end of data is the data reply`, async () => {
      const srv = await realServer({ data: () => [code, text] });
      const c = await SmtpClient.connect(opts(srv.port));
      try {
        const r = await c.send({ from: 'a@example.org', to: ['bob@example.com'] }, body('x\r\n'));
        assert.equal(r.data?.code, code);
        assert.equal(r.data?.text, `${code} ${text}`);
        assert.equal(c.usable, true);
        await c.reset();
      } finally {
        await c.quit();
        await srv.close();
      }
    });
  }

  test('a body stream that fails: rejects with EBODY, the server gets no message, the client is unusable', async () => {
    const srv = await realServer();
    const c = await SmtpClient.connect(opts(srv.port));
    try {
      const failing = new Readable({ read() {} });
      failing.push(b('Subject: half\r\n\r\nfirst part\r\n'));
      setTimeout(() => failing.destroy(new Error('disk read failed')), 50);
      await rejectsWith(c.send({ from: 'a@example.org', to: ['bob@example.com'] }, failing), 'EBODY', /disk read failed/);
      assert.equal(c.usable, false);
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(srv.got.length, 0, 'no truncated message delivered');
      await rejectsWith(c.reset(), 'EBODY');
    } finally {
      c.close();
      await srv.close();
    }
  });

  test('a body stream that already failed before send', async () => {
    const srv = await realServer();
    const c = await SmtpClient.connect(opts(srv.port));
    try {
      const dead = new Readable({ read() {} });
      dead.on('error', () => undefined);
      dead.destroy(new Error('gone'));
      await rejectsWith(c.send({ from: 'a@example.org', to: ['bob@example.com'] }, dead), 'EBODY', /gone/);
      assert.equal(srv.got.length, 0);
    } finally {
      c.close();
      await srv.close();
    }
  });

  test('addresses that could inject a command are refused before anything is written', async () => {
    const srv = await realServer();
    const c = await SmtpClient.connect(opts(srv.port));
    try {
      const bad = ['a@b\r\nRSET', 'a@b\nx', 'a@b\rx', 'a<b@c', 'a>b@c', 'a b@c', 'a@b\x00', 'a@b\x7f', 'a\tb@c', 'jos\u00e9@example.com', 'x'.repeat(255)];
      for (const a of bad) {
        await rejectsWith(c.send({ from: 'a@example.org', to: [a] }, body('x\r\n')), 'EENVELOPE');
        await rejectsWith(c.send({ from: a, to: ['bob@example.com'] }, body('x\r\n')), 'EENVELOPE');
      }
      await rejectsWith(c.send({ from: 'a@example.org', to: [] }, body('x\r\n')), 'EENVELOPE');
      await rejectsWith(c.send({ from: 'a@example.org', to: [''] }, body('x\r\n')), 'EENVELOPE');
      assert.equal(c.usable, true, 'nothing was sent, so the connection is fine');
      const r = await c.send({ from: 'a@example.org', to: ['bob@example.com'] }, body('x\r\n'));
      assert.equal(r.data?.code, 250);
      assert.equal(srv.got.length, 1);
      await rejectsWith(SmtpClient.connect(opts(srv.port, { heloName: 'bad name\r\nRSET' })), 'EPROTOCOL', /HELO/);
    } finally {
      await c.quit();
      await srv.close();
    }
  });

  test('a connection refused rejects with ECONNECTION', async () => {
    const s = net.createServer();
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
    const port = (s.address() as AddressInfo).port;
    await new Promise<void>((r) => s.close(() => r()));
    await rejectsWith(SmtpClient.connect(opts(port)), 'ECONNECTION', /ECONNREFUSED/);
  });

  test('quit() says QUIT and closes; it never throws, not even twice or after a failure', async () => {
    let closed = 0;
    const srv = await realServer({ options: { onClose: () => void closed++ } });
    const c = await SmtpClient.connect(opts(srv.port));
    await c.quit();
    assert.equal(c.usable, false);
    await c.quit();
    c.close();
    await rejectsWith(c.send({ from: 'a@example.org', to: ['bob@example.com'] }, body('x\r\n')), 'ECONNECTION');
    for (let i = 0; i < 50 && !closed; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(closed, 1);
    await srv.close();
  });
});

describe('SmtpClient STARTTLS', () => {
  let pki: ReturnType<typeof makePki>;
  let other: ReturnType<typeof makePki>;
  before(() => {
    pki = makePki('internal.example.com');
    other = makePki('internal.example.com'); // same name, a CA the client does not trust
  });
  const tlsServer = (p: ReturnType<typeof makePki>, more: Partial<SMTPServerOptions> = {}) =>
    realServer({ options: { hideSTARTTLS: false, key: p.key, cert: p.cert, ...more } });

  test('required, with the certificate verified against our CA and name', async () => {
    const srv = await tlsServer(pki);
    const c = await SmtpClient.connect(opts(srv.port, { tls: 'required', ca: pki.ca, servername: 'internal.example.com' }));
    try {
      assert.equal(c.secure, true);
      assert.ok(!c.extensions.has('STARTTLS'), 'extensions are those of the EHLO after TLS');
      const r = await c.send({ from: 'a@example.org', to: ['bob@example.com'] }, body('.secret\r\n'));
      assert.equal(r.data?.code, 250);
      assert.equal(srv.got[0]!.secure, true);
      assert.equal(srv.got[0]!.body.toString(), '.secret\r\n');
    } finally {
      await c.quit();
      await srv.close();
    }
  });

  test('required, the certificate is from a CA we do not trust: ETLS, nothing sent', async () => {
    const srv = await tlsServer(other);
    try {
      await rejectsWith(SmtpClient.connect(opts(srv.port, { tls: 'required', ca: pki.ca, servername: 'internal.example.com' })), 'ETLS');
      await rejectsWith(SmtpClient.connect(opts(srv.port, { tls: 'opportunistic', ca: pki.ca, servername: 'internal.example.com' })), 'ETLS', /./);
      const lax = await SmtpClient.connect(opts(srv.port, { tls: 'required', rejectUnauthorized: false }));
      assert.equal(lax.secure, true, 'without verification the same server is fine');
      await lax.quit();
    } finally {
      await srv.close();
    }
  });

  test('required, the name does not match: ETLS', async () => {
    const srv = await tlsServer(pki);
    try {
      await rejectsWith(SmtpClient.connect(opts(srv.port, { tls: 'required', ca: pki.ca, servername: 'other.example.com' })), 'ETLS', /other\.example\.com/);
    } finally {
      await srv.close();
    }
  });

  test('required, the server offers no STARTTLS: ETLS', async () => {
    const srv = await realServer({ options: { hideSTARTTLS: true } });
    try {
      await rejectsWith(SmtpClient.connect(opts(srv.port, { tls: 'required' })), 'ETLS', /not offered/);
      assert.equal(srv.stats.dataStarted, 0);
    } finally {
      await srv.close();
    }
  });

  test('opportunistic uses STARTTLS when offered, and plaintext only when it is not', async () => {
    const srv = await tlsServer(pki);
    const plain = await realServer({ options: { hideSTARTTLS: true } });
    try {
      const c = await SmtpClient.connect(opts(srv.port, { tls: 'opportunistic', ca: pki.ca, servername: 'internal.example.com' }));
      assert.equal(c.secure, true);
      await c.send({ from: 'a@example.org', to: ['bob@example.com'] }, body('x\r\n'));
      assert.equal(srv.got[0]!.secure, true);
      await c.quit();
      const p = await SmtpClient.connect(opts(plain.port, { tls: 'opportunistic' }));
      assert.equal(p.secure, false);
      assert.equal((await p.send({ from: 'a@example.org', to: ['bob@example.com'] }, body('x\r\n'))).data?.code, 250);
      await p.quit();
    } finally {
      await srv.close();
      await plain.close();
    }
  });

  test('none never starts TLS, even when offered', async () => {
    const srv = await tlsServer(pki);
    try {
      const c = await SmtpClient.connect(opts(srv.port, { tls: 'none' }));
      assert.equal(c.secure, false);
      assert.ok(c.extensions.has('STARTTLS'));
      await c.send({ from: 'a@example.org', to: ['bob@example.com'] }, body('x\r\n'));
      assert.equal(srv.got[0]!.secure, false);
      await c.quit();
    } finally {
      await srv.close();
    }
  });
});

describe('SmtpClient against a scripted server', () => {
  const servers: Array<{ close(): Promise<void> }> = [];
  after(async () => {
    for (const s of servers) await s.close();
  });
  const fake = async (o: Parameters<typeof scripted>[0]) => {
    const s = await scripted(o);
    servers.push(s);
    return s;
  };

  test('connect timeout: a server that accepts TCP but never greets', async () => {
    const s = await fake({ greeting: null });
    const t0 = Date.now();
    await rejectsWith(SmtpClient.connect(opts(s.port, { connectTimeoutMs: 300 })), 'ETIMEDOUT', /greeting/);
    const took = Date.now() - t0;
    assert.ok(took >= 280, `gave up after ${took} ms, before the timeout`);
  });

  test('command timeout: a server that never answers RCPT; the client is unusable afterwards', async () => {
    const s = await fake({ ehlo: '250 fake\r\n', on: (cmd) => (cmd === 'RCPT' ? null : undefined) });
    const c = await SmtpClient.connect(opts(s.port, { commandTimeoutMs: 300 }));
    await rejectsWith(c.send({ from: 'a@example.org', to: ['bob@example.com'] }, body('x\r\n')), 'ETIMEDOUT', /RCPT/);
    assert.equal(c.usable, false);
  });

  test('a reply line over 4 KiB is a protocol error', async () => {
    const s = await fake({ ehlo: `250-fake\r\n250 ${'x'.repeat(MAX_REPLY_LINE)}\r\n` });
    await rejectsWith(SmtpClient.connect(opts(s.port)), 'EPROTOCOL', /longer than 4096 bytes/);
    const t = await fake({ on: (cmd) => (cmd === 'RCPT' ? `550 ${'y'.repeat(5000)}\r\n` : undefined) });
    const c = await SmtpClient.connect(opts(t.port));
    await rejectsWith(c.send({ from: 'a@example.org', to: ['bob@example.com'] }, body('x\r\n')), 'EPROTOCOL', /longer than 4096 bytes/);
    assert.equal(c.usable, false);
  });

  test('an extra reply nobody asked for is a protocol error', async () => {
    const s = await fake({ ehlo: '250 fake\r\n', on: (cmd) => (cmd === 'MAIL' ? '250 ok\r\n250 and more\r\n' : undefined) });
    const c = await SmtpClient.connect(opts(s.port));
    await rejectsWith(c.send({ from: 'a@example.org', to: ['bob@example.com'] }, body('x\r\n')), 'EPROTOCOL', /unexpected reply/);
    assert.equal(c.usable, false);
  });

  test('an unsolicited reply on an idle connection (a 421 before closing) makes it unusable', async () => {
    let sock: net.Socket | undefined;
    const s = await fake({ on: (_cmd, so) => void (sock = so) });
    const c = await SmtpClient.connect(opts(s.port));
    assert.equal(c.usable, true);
    sock!.write('421 4.4.2 idle too long\r\n');
    for (let i = 0; i < 50 && c.usable; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(c.usable, false);
  });

  test('bytes after the 220 to STARTTLS, before the handshake, are refused (the STARTTLS injection trick)', async () => {
    const s = await fake({ ehlo: '250-fake\r\n250 STARTTLS\r\n', on: (cmd) => (cmd === 'STARTTLS' ? '220 go ahead\r\n250 injected\r\n' : undefined) });
    await rejectsWith(SmtpClient.connect(opts(s.port, { tls: 'opportunistic' })), 'EPROTOCOL', /unexpected reply|after the reply to STARTTLS/);
    const t = await fake({ ehlo: '250-fake\r\n250 STARTTLS\r\n', on: (cmd) => (cmd === 'STARTTLS' ? '220 go ahead\r\n250 half' : undefined) });
    await rejectsWith(SmtpClient.connect(opts(t.port, { tls: 'opportunistic' })), 'EPROTOCOL', /after the reply to STARTTLS/);
  });

  test('STARTTLS offered but refused: opportunistic does not fall back to plaintext', async () => {
    const s = await fake({ ehlo: '250-fake\r\n250 STARTTLS\r\n', on: (cmd) => (cmd === 'STARTTLS' ? '454 4.7.0 TLS not available\r\n' : undefined) });
    await rejectsWith(SmtpClient.connect(opts(s.port, { tls: 'opportunistic' })), 'ETLS', /454/);
  });

  test('EHLO refused: HELO fallback, except when TLS is required', async () => {
    const s = await fake({ on: (cmd) => (cmd === 'EHLO' ? '502 5.5.1 what\r\n' : undefined) });
    const c = await SmtpClient.connect(opts(s.port, { tls: 'opportunistic' }));
    assert.equal(c.extensions.size, 0);
    const r = await c.send({ from: 'a@example.org', to: ['bob@example.com'], size: 3, eightBit: true }, body('x\r\n'));
    assert.equal(r.data?.code, 250);
    assert.match(s.transcript(), /^EHLO moat\.example\.com\r\nHELO moat\.example\.com\r\nMAIL FROM:<a@example\.org>\r\nRCPT TO:<bob@example\.com>\r\nDATA\r\nx\r\n\.\r\n$/, 'no SIZE or BODY to a server that did not offer them; one command at a time');
    c.close();
    await rejectsWith(SmtpClient.connect(opts(s.port, { tls: 'required' })), 'EPROTOCOL', /EHLO answered: 502/);
  });

  test('a greeting other than 220 fails the connect with the reply', async () => {
    const s = await fake({ greeting: '554 5.3.2 no service\r\n' });
    const e = await rejectsWith(SmtpClient.connect(opts(s.port)), 'EPROTOCOL', /greeting answered: 554/);
    assert.deepEqual(e.reply, { code: 554, text: '554 5.3.2 no service' });
  });

  test('pipelining: MAIL, RCPTs and DATA go in one write; a 354 though no recipient was accepted gets a lone "."', async () => {
    const s = await fake({ on: (cmd) => (cmd === 'RCPT' ? '550 5.1.1 nope\r\n' : undefined) });
    const c = await SmtpClient.connect(opts(s.port));
    const r = await c.send({ from: 'a@example.org', to: ['x@example.com', 'y@example.com'] }, body('must not be sent\r\n'));
    assert.equal(r.data, null);
    assert.deepEqual(r.rcpts.map((x) => x.code), [550, 550]);
    assert.equal(c.usable, true);
    assert.equal(s.transcript(), 'EHLO moat.example.com\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<x@example.com>\r\nRCPT TO:<y@example.com>\r\nDATA\r\n.\r\n');
    c.close();
  });

  test('multi-line replies and replies with odd bytes come back as one printable line', async () => {
    const s = await fake({ on: (cmd) => (cmd === '.' ? '250-2.0.0 first\r\n250-\x1b[31mred\xff\r\n250 2.0.0 last\r\n' : undefined) });
    const c = await SmtpClient.connect(opts(s.port));
    const r = await c.send({ from: 'a@example.org', to: ['bob@example.com'] }, body('x\r\n'));
    assert.equal(r.data?.text, '250 2.0.0 first ?[31mred? 2.0.0 last');
    c.close();
  });

  test('the server closes in the middle of DATA: rejects with ECONNECTION, unusable', async () => {
    const s = await fake({ onBodyBytes: (_c, so) => so.destroy() });
    const c = await SmtpClient.connect(opts(s.port));
    let pulled = 0;
    const endless = new Readable({
      read() {
        pulled++;
        setTimeout(() => this.push(Buffer.alloc(64 * 1024, 0x61)), 1);
      },
    });
    await rejectsWith(c.send({ from: 'a@example.org', to: ['bob@example.com'] }, endless), 'ECONNECTION', /closed by server|ECONNRESET|EPIPE/);
    assert.equal(c.usable, false);
    assert.ok(pulled < 1000);
  });

  test('back-pressure: a server that stops reading stalls the body; the client times out instead of buffering it all', async () => {
    const s = await fake({ on: (cmd, so) => (cmd === 'DATA' ? (so.pause(), undefined) : undefined) });
    const c = await SmtpClient.connect(opts(s.port, { commandTimeoutMs: 500 }));
    let pulled = 0;
    const huge = new Readable({
      read() {
        if (pulled >= 4096) return this.push(null); // 256 MiB at most
        pulled++;
        this.push(Buffer.alloc(64 * 1024, 0x61));
      },
    });
    await rejectsWith(c.send({ from: 'a@example.org', to: ['bob@example.com'] }, huge), 'ETIMEDOUT', /drain/);
    assert.ok(pulled * 64 < 64 * 1024, `read only what the socket took: ${pulled * 64} KiB`);
    huge.destroy();
  });

  test('one command at a time', async () => {
    const s = await fake({ on: (cmd) => (cmd === 'RSET' ? null : undefined) });
    const c = await SmtpClient.connect(opts(s.port, { commandTimeoutMs: 300 }));
    const first = c.reset();
    await assert.rejects(c.reset(), /already running/);
    await rejectsWith(first, 'ETIMEDOUT');
  });
});

test('AUTH LOGIN when the server offers only LOGIN; a refused login fails with EAUTH and the server reply, never the password', async () => {
  const pki = makePki('relay.example');
  const seen: string[] = [];
  const server = new SMTPServer({
    logger: false,
    disableReverseLookup: true,
    key: pki.key,
    cert: pki.cert,
    authMethods: ['LOGIN'],
    onAuth(auth, _s, cb) {
      seen.push(`${auth.method} ${auth.username}`);
      if (auth.password === 'good-secret') return cb(null, { user: auth.username });
      cb(Object.assign(new Error('5.7.8 no'), { responseCode: 535 }));
    },
    onData(stream, _s, cb) {
      stream.resume();
      stream.on('end', () => cb());
    },
  });
  server.on('error', () => undefined);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.server.address() as AddressInfo).port;
  const opts = (pass: string): ClientOptions => ({ host: '127.0.0.1', port, heloName: 'mx.example.com', tls: 'required', rejectUnauthorized: true, ca: pki.ca, servername: 'relay.example', connectTimeoutMs: 2000, commandTimeoutMs: 2000, auth: { user: 'moat', pass } });
  try {
    const c = await SmtpClient.connect(opts('good-secret'));
    const r = await c.send({ from: 'a@example.com', to: ['b@example.net'] }, Readable.from([Buffer.from('Subject: x\r\n\r\nhi\r\n')]));
    assert.equal(r.data?.code, 250);
    assert.equal(c.tlsInfo?.verified, true);
    await c.quit();
    const e = await SmtpClient.connect(opts('bad-secret')).then(
      () => null,
      (err: SmtpClientError) => err,
    );
    assert.equal(e?.code, 'EAUTH');
    assert.match(e!.message, /^AUTH answered: 535 /);
    assert.ok(!e!.message.includes('bad-secret'));
    assert.deepEqual(seen, ['LOGIN moat', 'LOGIN moat']);
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
  }
});
