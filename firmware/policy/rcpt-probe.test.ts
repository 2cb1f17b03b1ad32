/*
 * Tests for policy/rcpt-probe.ts, through the wire: a real smtp-server on
 * loopback as the internal server, plus small scripted TCP servers for the
 * misbehaviours a real server will not produce (garbage, oversized or split
 * replies, silence, STARTTLS injection), a closed port, and the reply parser fed
 * every fixture split at every offset.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { rmSync } from 'node:fs';
import type { SMTPServerOptions } from 'smtp-server';
import { probeRecipient, ReplyParser, ReplyFormatError, MAX_REPLY_LINE, MAX_REPLY_LINES, type ProbeTarget } from './rcpt-probe.ts';
import { closedPort, startSink, type Sink } from '../../test/helpers/sink.ts';
import { makePki } from '../../test/helpers/certs.ts';

const HELO = 'moat.example.net';
const USERS = new Set(['alice@example.org', 'bob@example.org']);

type Internal = Sink;

/** A real smtp-server that knows USERS and rejects other recipients with 550 (or the given code). STARTTLS is offered unless extra says otherwise. */
function internalServer(extra: Partial<SMTPServerOptions> = {}, rejectCode = 550): Promise<Sink> {
  return startSink({
    server: { hideSTARTTLS: false, ...extra },
    rcpt: (a) =>
      rejectCode === 550 && USERS.has(a.toLowerCase())
        ? null
        : { code: rejectCode, message: rejectCode === 550 ? '5.1.1 No such user here' : '4.3.0 Directory unavailable' },
  });
}

type Scripted = {
  port: number;
  connections: number;
  /** Every command line received, over all connections. */
  commands: string[];
  /** Resolves when the server side of the most recent connection has closed. */
  lastClosed(): Promise<void>;
  close(): Promise<void>;
};

/**
 * A raw TCP server that speaks whatever the test says: greeting on connect (null:
 * never say anything), then respond(line) for each CRLF-terminated command line.
 */
async function scripted(
  greeting: string | Buffer | null,
  respond: (line: string, sock: net.Socket) => void = () => {},
  opts: { byteByByte?: boolean } = {},
): Promise<Scripted> {
  const sockets = new Set<net.Socket>();
  const state = { connections: 0, commands: [] as string[], closed: Promise.resolve() };
  const server = net.createServer((sock) => {
    state.connections++;
    sockets.add(sock);
    state.closed = once(sock, 'close').then(() => {});
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => {});
    let pending = '';
    sock.on('data', (d) => {
      pending += d.toString('latin1');
      let i;
      while ((i = pending.indexOf('\r\n')) !== -1) {
        const line = pending.slice(0, i);
        pending = pending.slice(i + 2);
        state.commands.push(line);
        if (!sock.destroyed) respond(line, sock);
      }
    });
    if (greeting === null) return;
    if (opts.byteByByte) {
      const bytes = Buffer.from(greeting);
      let i = 0;
      const next = (): void => {
        if (sock.destroyed || i >= bytes.length) return;
        sock.write(bytes.subarray(i, i + 1), () => setImmediate(next));
        i++;
      };
      next();
    } else sock.write(greeting);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    get connections() {
      return state.connections;
    },
    commands: state.commands,
    lastClosed: () => state.closed,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A well-behaved scripted dialogue; override one step's answer with `answers`. */
function standard(answers: Record<string, string> = {}): (line: string, sock: net.Socket) => void {
  return (line, sock) => {
    const verb = line.split(' ', 1)[0]!.toUpperCase();
    const answer =
      answers[verb] ??
      ({ EHLO: '250-fake.internal\r\n250 8BITMIME\r\n', MAIL: '250 ok\r\n', RCPT: '250 ok\r\n', RSET: '250 ok\r\n', QUIT: '221 bye\r\n' } as Record<
        string,
        string
      >)[verb] ??
      '502 what\r\n';
    sock.write(Buffer.from(answer, 'latin1'));
    if (verb === 'QUIT') sock.end();
  };
}

/** Fails unless the server side of the last connection closes soon (the prober must destroy its socket). */
async function closedWithin(s: Scripted, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`socket still open after ${ms} ms`)), ms);
  });
  try {
    await Promise.race([s.lastClosed(), guard]);
  } finally {
    clearTimeout(timer);
  }
}

const local = (port: number, more: Partial<ProbeTarget> = {}): ProbeTarget => ({ host: '127.0.0.1', port, tls: 'none', ...more });
const OPTS = { heloName: HELO, timeoutMs: 3000 };

describe('probeRecipient against a real smtp-server', () => {
  let known: Internal;
  let busy: Internal;
  before(async () => {
    known = await internalServer();
    busy = await internalServer({}, 451);
  });
  after(async () => {
    await known.close();
    await busy.close();
  });

  test('a known user exists: 250 to RCPT', async () => {
    const a = await probeRecipient(local(known.port), 'alice@example.org', OPTS);
    assert.deepEqual({ verdict: a.verdict, code: a.code, server: a.server }, { verdict: 'exists', code: 250, server: `127.0.0.1:${known.port}` });
    assert.equal(known.rcpts.at(-1)?.address, 'alice@example.org');
  });

  test('an unknown user is unknown: 550 to RCPT, reply text kept', async () => {
    const a = await probeRecipient(local(known.port), 'mallory@example.org', OPTS);
    assert.equal(a.verdict, 'unknown');
    assert.equal(a.code, 550);
    assert.match(a.reply, /^550 5\.1\.1 No such user here$/);
  });

  test('451 to RCPT is a tempfail with the server code', async () => {
    const a = await probeRecipient(local(busy.port), 'alice@example.org', OPTS);
    assert.equal(a.verdict, 'tempfail');
    assert.equal(a.code, 451);
    assert.match(a.reply, /Directory unavailable/);
  });

  test('5xx to MAIL (before RCPT) is a tempfail, never unknown', async () => {
    const strict = await internalServer({
      onMailFrom(_a, _s, cb) {
        cb(Object.assign(new Error('5.7.1 null sender refused'), { responseCode: 553 }));
      },
    });
    try {
      const a = await probeRecipient(local(strict.port), 'alice@example.org', OPTS);
      assert.equal(a.verdict, 'tempfail');
      assert.equal(a.code, 553);
      assert.match(a.reply, /^MAIL answered: 553/);
      assert.equal(strict.rcpts.length, 0, 'RCPT must not be sent after MAIL failed');
    } finally {
      await strict.close();
    }
  });

  test('tls "required" fails when the server does not offer STARTTLS', async () => {
    const plain = await internalServer({ hideSTARTTLS: true });
    try {
      const a = await probeRecipient(local(plain.port, { tls: 'required' }), 'alice@example.org', OPTS);
      assert.equal(a.verdict, 'tempfail');
      assert.equal(a.code, 0);
      assert.match(a.reply, /STARTTLS required but not offered/);
      assert.equal(plain.rcpts.length, 0);
      const b = await probeRecipient(local(plain.port, { tls: 'opportunistic' }), 'alice@example.org', OPTS);
      assert.equal(b.verdict, 'exists', 'opportunistic goes on in plaintext');
    } finally {
      await plain.close();
    }
  });
});

describe('probeRecipient with STARTTLS', () => {
  let dir = '';
  let ca = '';
  let tlsServer: Internal | null = null;
  before(async () => {
    const pki = makePki('mx.internal.test'); // openssl: scripts/setup.sh installs it
    dir = pki.dir;
    ca = pki.ca;
    tlsServer = await internalServer({ key: pki.key, cert: pki.cert });
  });
  after(async () => {
    await tlsServer?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('opportunistic upgrades when offered and verifies the name given as servername', async () => {
    const a = await probeRecipient(
      local(tlsServer!.port, { tls: 'opportunistic', ca, servername: 'mx.internal.test' }),
      'alice@example.org',
      OPTS,
    );
    assert.equal(a.verdict, 'exists', a.reply);
    assert.deepEqual(tlsServer!.rcpts.at(-1), { address: 'alice@example.org', secure: true });
  });

  test('required verifies an IP address against the certificate when no servername is given', async () => {
    const a = await probeRecipient(local(tlsServer!.port, { tls: 'required', ca }), 'nobody@example.org', OPTS);
    assert.equal(a.verdict, 'unknown', a.reply);
    assert.deepEqual(tlsServer!.rcpts.at(-1), { address: 'nobody@example.org', secure: true });
  });

  test('an untrusted certificate is a tempfail by default, accepted only with rejectUnauthorized false', async () => {
    const before = tlsServer!.rcpts.length;
    const a = await probeRecipient(local(tlsServer!.port, { tls: 'required' }), 'alice@example.org', OPTS);
    assert.equal(a.verdict, 'tempfail');
    assert.equal(a.code, 0);
    assert.match(a.reply, /TLS handshake: .*(self[- ]signed|certificate)/i);
    assert.equal(tlsServer!.rcpts.length, before, 'no RCPT over an unverified session');
    const b = await probeRecipient(local(tlsServer!.port, { tls: 'required', rejectUnauthorized: false }), 'alice@example.org', OPTS);
    assert.equal(b.verdict, 'exists', b.reply);
  });

  test('a certificate for another name is a tempfail', async () => {
    const a = await probeRecipient(
      local(tlsServer!.port, { tls: 'required', ca, servername: 'other.internal.test' }),
      'alice@example.org',
      OPTS,
    );
    assert.equal(a.verdict, 'tempfail');
    assert.match(a.reply, /TLS handshake: .*(altnames|other\.internal\.test)/i);
  });

  test('tls "none" stays in plaintext even when STARTTLS is offered', async () => {
    const a = await probeRecipient(local(tlsServer!.port, { tls: 'none' }), 'alice@example.org', OPTS);
    assert.equal(a.verdict, 'exists');
    assert.deepEqual(tlsServer!.rcpts.at(-1), { address: 'alice@example.org', secure: false });
  });
});

describe('probeRecipient against broken servers', () => {
  test('the dialogue is exactly EHLO, MAIL FROM:<>, RCPT, RSET, QUIT; the socket is closed afterwards', async () => {
    const s = await scripted('220 fake ESMTP\r\n', standard());
    try {
      const a = await probeRecipient(local(s.port), 'alice@example.org', OPTS);
      assert.equal(a.verdict, 'exists');
      assert.deepEqual(s.commands, [`EHLO ${HELO}`, 'MAIL FROM:<>', 'RCPT TO:<alice@example.org>', 'RSET', 'QUIT']);
      await s.lastClosed();
    } finally {
      await s.close();
    }
  });

  test('a server that is not listening: tempfail, code 0, the error named', async () => {
    const port = await closedPort();
    const a = await probeRecipient(local(port), 'alice@example.org', OPTS);
    assert.deepEqual({ verdict: a.verdict, code: a.code }, { verdict: 'tempfail', code: 0 });
    assert.match(a.reply, /^connect: .*ECONNREFUSED/);
  });

  test('a server that accepts but never answers: tempfail at the deadline, socket closed', async () => {
    const s = await scripted(null);
    try {
      const t0 = performance.now();
      const a = await probeRecipient(local(s.port), 'alice@example.org', { heloName: HELO, timeoutMs: 150 });
      const elapsed = performance.now() - t0;
      assert.deepEqual({ verdict: a.verdict, code: a.code }, { verdict: 'tempfail', code: 0 });
      assert.match(a.reply, /^timeout after 150 ms \(greeting\)$/);
      assert.ok(elapsed >= 140, `gave up after ${elapsed} ms, before the deadline`);
      await s.lastClosed();
    } finally {
      await s.close();
    }
  });

  test('a server that stalls after RCPT answered keeps the verdict', async () => {
    const s = await scripted('220 fake\r\n', (line, sock) => {
      if (line.startsWith('RSET')) return; // never answers
      standard()(line, sock);
    });
    try {
      const a = await probeRecipient(local(s.port), 'alice@example.org', { heloName: HELO, timeoutMs: 200 });
      assert.equal(a.verdict, 'exists');
      assert.equal(a.code, 250);
    } finally {
      await s.close();
    }
  });

  test('no timer is left running and no socket left open after an answer', async () => {
    const s = await scripted('220 fake\r\n', standard());
    try {
      const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
      const before = timers();
      const a = await probeRecipient(local(s.port), 'alice@example.org', { heloName: HELO, timeoutMs: 60_000 });
      assert.equal(a.verdict, 'exists');
      assert.equal(timers(), before);
      await s.lastClosed();
    } finally {
      await s.close();
    }
  });

  const broken: [name: string, greeting: string | Buffer, answers: Record<string, string>, reply: RegExp][] = [
    ['a garbage greeting', 'hello there\r\n', {}, /malformed reply line: hello there \(greeting\)/],
    ['a greeting ending in a bare LF', '220 fake\n', {}, /bare LF/],
    ['a bare CR inside a line', '220 fa\rke\r\n', {}, /bare CR/],
    ['a code that changes within a reply', '220-fake\r\n250 more\r\n', {}, /code changed/],
    ['a 1xx code', '120 wait\r\n', {}, /malformed/],
    ['an empty line', '\r\n', {}, /malformed/],
    ['an EHLO line over 4 KiB', '220 fake\r\n', { EHLO: `250 ${'x'.repeat(MAX_REPLY_LINE)}\r\n` }, /longer than 4096 bytes \(EHLO\)/],
    [
      'an EHLO reply over 64 lines',
      '220 fake\r\n',
      { EHLO: '250-x\r\n'.repeat(MAX_REPLY_LINES) + '250 end\r\n' },
      /longer than 64 lines \(EHLO\)/,
    ],
    ['a second reply pipelined after the greeting', '220 fake\r\n250 surprise\r\n', {}, /unexpected data after reply \(greeting\)/],
  ];
  for (const [name, greeting, answers, reply] of broken) {
    test(`${name}: tempfail, code 0`, async () => {
      const s = await scripted(greeting, standard(answers));
      try {
        const a = await probeRecipient(local(s.port), 'alice@example.org', OPTS);
        assert.deepEqual({ verdict: a.verdict, code: a.code }, { verdict: 'tempfail', code: 0 }, a.reply);
        assert.match(a.reply, reply);
        assert.ok(!s.commands.some((c) => c.startsWith('RCPT')), 'never reached RCPT');
        await closedWithin(s, 2000);
      } finally {
        await s.close();
      }
    });
  }

  test('an endless line without CRLF fails at the cap, not at the deadline', async () => {
    const s = await scripted(Buffer.alloc(64 * 1024, 0x41));
    try {
      const a = await probeRecipient(local(s.port), 'alice@example.org', { heloName: HELO, timeoutMs: 60_000 });
      assert.equal(a.verdict, 'tempfail');
      assert.match(a.reply, /longer than 4096 bytes/, 'the cap answered, not the 60 s deadline');
    } finally {
      await s.close();
    }
  });

  test('limits are inclusive: a 64-line EHLO reply with a 4096-byte line is fine', async () => {
    const long = `250-${'x'.repeat(MAX_REPLY_LINE - 4)}\r\n`;
    const s = await scripted('220 fake\r\n', standard({ EHLO: long + '250-x\r\n'.repeat(MAX_REPLY_LINES - 2) + '250 end\r\n' }));
    try {
      const a = await probeRecipient(local(s.port), 'alice@example.org', OPTS);
      assert.equal(a.verdict, 'exists', a.reply);
    } finally {
      await s.close();
    }
  });

  test('a multi-line greeting sent one byte at a time is read whole', async () => {
    const s = await scripted('220-fake.internal ESMTP\r\n220-second line\r\n220 ready\r\n', standard(), { byteByByte: true });
    try {
      const a = await probeRecipient(local(s.port), 'bob@example.org', OPTS);
      assert.equal(a.verdict, 'exists', a.reply);
    } finally {
      await s.close();
    }
  });

  test('a 421 or 554 greeting is a tempfail carrying that code', async () => {
    for (const code of [421, 554]) {
      const s = await scripted(`${code} go away\r\n`, standard());
      try {
        const a = await probeRecipient(local(s.port), 'alice@example.org', OPTS);
        assert.deepEqual({ verdict: a.verdict, code: a.code }, { verdict: 'tempfail', code });
        assert.equal(a.reply, `greeting answered: ${code} go away`);
      } finally {
        await s.close();
      }
    }
  });

  test('STARTTLS answered with extra plaintext (command injection) is refused before any handshake', async () => {
    const s = await scripted(
      '220 fake\r\n',
      standard({ EHLO: '250-fake\r\n250 STARTTLS\r\n', STARTTLS: '220 go ahead\r\n250 injected\r\n' }),
    );
    try {
      const a = await probeRecipient(local(s.port, { tls: 'opportunistic' }), 'alice@example.org', OPTS);
      assert.equal(a.verdict, 'tempfail');
      assert.match(a.reply, /unexpected data after reply \(STARTTLS\)/);
      assert.deepEqual(s.commands, [`EHLO ${HELO}`, 'STARTTLS']);
      await closedWithin(s, 2000);
    } finally {
      await s.close();
    }
  });

  test('server text is made printable in the reply', async () => {
    const s = await scripted('220 fake\r\n', standard({ RCPT: '550 no\x1b[31m such\xff user\r\n' }));
    try {
      const a = await probeRecipient(local(s.port), 'alice@example.org', OPTS);
      assert.equal(a.verdict, 'unknown');
      assert.equal(a.reply, '550 no?[31m such? user');
    } finally {
      await s.close();
    }
  });

  test('forbidden characters in the address or HELO name: refused without connecting', async () => {
    const s = await scripted('220 fake\r\n', standard());
    try {
      for (const bad of ['a\r\n@example.org', 'a\n@example.org', 'a\r@example.org', '<a@example.org>', 'a>@example.org', 'a b@example.org', 'a\t@example.org', '', 'x'.repeat(300)]) {
        const a = await probeRecipient(local(s.port), bad, OPTS);
        assert.deepEqual({ verdict: a.verdict, code: a.code }, { verdict: 'tempfail', code: 0 }, JSON.stringify(bad));
        assert.match(a.reply, /^refused to probe: address/);
      }
      for (const helo of ['moat\r\nRCPT TO:<x@y>', 'has space', '']) {
        const a = await probeRecipient(local(s.port), 'alice@example.org', { heloName: helo, timeoutMs: 1000 });
        assert.match(a.reply, /^refused to probe: invalid HELO name/);
      }
      assert.equal(s.connections, 0);
    } finally {
      await s.close();
    }
  });
});

describe('ReplyParser', () => {
  const fixtures: [string, { code: number; lines: string[] }[]][] = [
    ['220 ok\r\n', [{ code: 220, lines: ['ok'] }]],
    ['250-a\r\n250-b c\r\n250 d\r\n', [{ code: 250, lines: ['a', 'b c', 'd'] }]],
    ['250\r\n', [{ code: 250, lines: [''] }]],
    ['250-\r\n250 x\r\n451 y\r\n', [{ code: 250, lines: ['', 'x'] }, { code: 451, lines: ['y'] }]],
  ];
  for (const [input, expected] of fixtures) {
    test(`parses ${JSON.stringify(input)} split at every offset and in 1- and 2-byte chunks`, () => {
      const bytes = Buffer.from(input, 'latin1');
      const chunkings: Buffer[][] = [];
      for (let i = 0; i <= bytes.length; i++) chunkings.push([bytes.subarray(0, i), bytes.subarray(i)]);
      for (const size of [1, 2]) {
        const c: Buffer[] = [];
        for (let i = 0; i < bytes.length; i += size) c.push(bytes.subarray(i, i + size));
        chunkings.push(c);
      }
      for (const chunks of chunkings) {
        const p = new ReplyParser();
        const got = chunks.flatMap((c) => p.push(c));
        assert.deepEqual(got, expected);
        assert.equal(p.busy, false);
      }
    });
  }

  test('an unfinished line is refused as soon as it passes the cap, not when its CRLF comes', () => {
    const head = Buffer.from(`250 ${'z'.repeat(MAX_REPLY_LINE - 4)}`);
    const p = new ReplyParser();
    assert.deepEqual(p.push(head), []);
    assert.deepEqual(p.push(Buffer.from('\r')), [], 'the CR of the CRLF may still come');
    const q = new ReplyParser();
    q.push(head);
    assert.throws(() => q.push(Buffer.from('z')), /longer than 4096 bytes/);
    const r = new ReplyParser();
    assert.throws(() => r.push(Buffer.from(`250 ${'z'.repeat(MAX_REPLY_LINE - 3)}\r`)), /longer than 4096 bytes/);
  });

  test('busy while a reply is unfinished', () => {
    const p = new ReplyParser();
    assert.deepEqual(p.push(Buffer.from('250-a\r\n')), []);
    assert.equal(p.busy, true);
    assert.deepEqual(p.push(Buffer.from('250 b\r')), []);
    assert.equal(p.busy, true);
    assert.deepEqual(p.push(Buffer.from('\n')), [{ code: 250, lines: ['a', 'b'] }]);
    assert.equal(p.busy, false);
  });

  test('a line of exactly 4096 bytes is accepted in any chunking, 4097 is refused', () => {
    const ok = Buffer.from(`250 ${'y'.repeat(MAX_REPLY_LINE - 4)}\r\n`);
    const tooLong = Buffer.from(`250 ${'y'.repeat(MAX_REPLY_LINE - 3)}\r\n`);
    for (const cut of [0, MAX_REPLY_LINE - 1, MAX_REPLY_LINE, MAX_REPLY_LINE + 1, ok.length]) {
      const p = new ReplyParser();
      assert.equal([...p.push(ok.subarray(0, cut)), ...p.push(ok.subarray(cut))].length, 1, `cut ${cut}`);
      const q = new ReplyParser();
      assert.throws(() => {
        q.push(tooLong.subarray(0, cut));
        q.push(tooLong.subarray(cut));
      }, ReplyFormatError);
    }
  });
});
