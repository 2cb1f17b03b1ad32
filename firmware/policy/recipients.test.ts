/*
 * Tests for policy/recipients.ts: list-mode matching (wildcard edge cases), and
 * verify mode through the wire against real smtp-server instances on loopback
 * (connections counted on the server), with an injected clock for the TTLs.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { RecipientDirectory, type RecipientsConfig } from './recipients.ts';
import type { ProbeTarget, probeRecipient } from './rcpt-probe.ts';
import { closedPort, silentServer, startSink, type Sink } from '../../test/helpers/sink.ts';

const HELO = 'moat.example.net';
const USERS = new Set(['alice@example.org', 'bob@example.org', 'carol@example.org']);

/** A real internal server: knows USERS, answers other recipients with `rejectCode` (550 or 451). */
function internalServer(rejectCode = 550): Promise<Sink> {
  return startSink({
    rcpt: (a) =>
      rejectCode === 550 && USERS.has(a.toLowerCase())
        ? null
        : { code: rejectCode, message: rejectCode === 550 ? '5.1.1 No such user' : '4.3.0 Try later' },
  });
}


const target = (port: number): ProbeTarget => ({ host: '127.0.0.1', port, tls: 'none' });

function verifyConfig(v: Partial<RecipientsConfig['verify']> = {}): RecipientsConfig {
  return {
    mode: 'verify',
    list: [],
    verify: { positiveTtlMs: 60_000, negativeTtlMs: 5_000, timeoutMs: 2_000, maxCacheEntries: 1000, ...v },
  };
}

/** A probe that must never be called. */
const noProbe: typeof probeRecipient = async () => {
  throw new Error('probe called');
};

describe('mode "any"', () => {
  test('accepts every address without asking anyone', async () => {
    let asked = 0;
    const d = new RecipientDirectory({ ...verifyConfig(), mode: 'any' }, () => {
      asked++;
      return [];
    }, { heloName: HELO, probe: noProbe });
    assert.deepEqual(await d.check('whoever@example.org'), { verdict: 'accept', source: 'any' });
    assert.equal(asked, 0);
  });

  test('an unknown mode is refused at construction', () => {
    assert.throws(
      () => new RecipientDirectory({ ...verifyConfig(), mode: 'all' as never }, () => [], { heloName: HELO }),
      /recipients\.mode/,
    );
  });
});

describe('mode "list"', () => {
  const d = new RecipientDirectory(
    {
      ...verifyConfig(),
      mode: 'list',
      list: ['Alice@Example.org', 'bob@example.org', '*@Example.NET', 'a*b@example.com', 'postmaster@example.com'],
    },
    () => [],
    { heloName: HELO, probe: noProbe },
  );
  const cases: [address: string, verdict: 'accept' | 'unknown'][] = [
    ['alice@example.org', 'accept'],
    ['ALICE@example.org', 'accept'], // local part compared case-insensitively
    ['aLiCe@example.org', 'accept'],
    ['bob@example.org', 'accept'],
    ['carol@example.org', 'unknown'],
    ['alice@sub.example.org', 'unknown'],
    ['alice@example.org.evil.test', 'unknown'],
    ['alice@example.org.', 'unknown'],
    ['anyone@example.net', 'accept'], // wildcard covers the whole domain
    ['Some.One+tag@example.net', 'accept'],
    ['x@sub.example.net', 'unknown'], // but not its subdomains
    ['x@evilexample.net', 'unknown'], // nor a domain that merely ends the same
    ['x@example.net.evil.test', 'unknown'],
    ['x@anexample.net', 'unknown'],
    ['*@example.org', 'unknown'], // a literal "*" address is not a wildcard for other domains
    ['a*b@example.com', 'accept'], // "*" inside a local part is a literal character
    ['axb@example.com', 'unknown'],
    ['ab@example.com', 'unknown'],
    ['other@example.com', 'unknown'],
    ['example.net', 'unknown'],
    ['@example.net', 'unknown'],
    ['alice@', 'unknown'],
    ['', 'unknown'],
  ];
  for (const [address, verdict] of cases) {
    test(`${JSON.stringify(address)} → ${verdict}`, async () => {
      assert.deepEqual(await d.check(address), { verdict, source: 'list' });
    });
  }

  test('an entry without a local part or domain is refused at construction', () => {
    for (const bad of ['nobody', '@example.org', 'alice@']) {
      assert.throws(
        () => new RecipientDirectory({ ...verifyConfig(), mode: 'list', list: [bad] }, () => [], { heloName: HELO }),
        /recipients\.list/,
        bad,
      );
    }
  });

  test('a list of 100 000 entries: first, last and absent addresses, any case', async () => {
    const big = new RecipientDirectory(
      { ...verifyConfig(), mode: 'list', list: Array.from({ length: 100_000 }, (_, i) => `user${i}@example.org`) },
      () => [],
      { heloName: HELO },
    );
    assert.equal((await big.check('user0@example.org')).verdict, 'accept');
    assert.equal((await big.check('USER99999@Example.ORG')).verdict, 'accept');
    assert.equal((await big.check('user100000@example.org')).verdict, 'unknown');
  });
});

describe('mode "verify" through the wire', () => {
  let known: Sink;
  let busy: Sink;
  let down: number;
  before(async () => {
    known = await internalServer(550);
    busy = await internalServer(451);
    down = await closedPort();
  });
  after(async () => {
    await known.close();
    await busy.close();
  });

  test('a known user is accepted by probe, then from the cache without a new connection', async () => {
    const d = new RecipientDirectory(verifyConfig(), () => [target(known.port)], { heloName: HELO, now: () => 0 });
    const c0 = known.connections;
    const first = await d.check('alice@example.org');
    assert.equal(first.verdict, 'accept');
    assert.equal(first.source, 'probe');
    assert.match(first.detail ?? '', new RegExp(`^127\\.0\\.0\\.1:${known.port}: 250 `));
    assert.equal(known.connections, c0 + 1);
    const second = await d.check('alice@example.org');
    assert.deepEqual({ verdict: second.verdict, source: second.source }, { verdict: 'accept', source: 'cache' });
    assert.equal(known.connections, c0 + 1, 'the cache answered');
  });

  test('an unknown user is unknown by probe, then from the cache', async () => {
    const d = new RecipientDirectory(verifyConfig(), () => [target(known.port)], { heloName: HELO, now: () => 0 });
    const c0 = known.connections;
    const first = await d.check('mallory@example.org');
    assert.deepEqual({ verdict: first.verdict, source: first.source }, { verdict: 'unknown', source: 'probe' });
    assert.match(first.detail ?? '', /550 5\.1\.1 No such user/);
    const second = await d.check('mallory@example.org');
    assert.deepEqual({ verdict: second.verdict, source: second.source }, { verdict: 'unknown', source: 'cache' });
    assert.equal(known.connections, c0 + 1);
  });

  test('positive and negative TTLs expire on the injected clock, and then the server is asked again', async () => {
    let now = 1_000;
    const d = new RecipientDirectory(verifyConfig({ positiveTtlMs: 1000, negativeTtlMs: 100 }), () => [target(known.port)], {
      heloName: HELO,
      now: () => now,
    });
    const c0 = known.connections;
    assert.equal((await d.check('bob@example.org')).source, 'probe');
    assert.equal((await d.check('nobody@example.org')).source, 'probe');
    assert.equal(known.connections, c0 + 2);

    now += 99;
    assert.equal((await d.check('bob@example.org')).source, 'cache');
    assert.equal((await d.check('nobody@example.org')).source, 'cache');
    now += 1; // negative TTL reached
    assert.equal((await d.check('bob@example.org')).source, 'cache');
    const again = await d.check('nobody@example.org');
    assert.deepEqual({ verdict: again.verdict, source: again.source }, { verdict: 'unknown', source: 'probe' });
    assert.equal(known.connections, c0 + 3);

    now += 899; // 999 ms after bob was cached
    assert.equal((await d.check('bob@example.org')).source, 'cache');
    now += 1; // positive TTL reached
    const bob = await d.check('bob@example.org');
    assert.deepEqual({ verdict: bob.verdict, source: bob.source }, { verdict: 'accept', source: 'probe' });
    assert.equal(known.connections, c0 + 4);
  });

  test('a TTL of 0 disables caching for that kind of answer', async () => {
    const d = new RecipientDirectory(verifyConfig({ negativeTtlMs: 0 }), () => [target(known.port)], { heloName: HELO, now: () => 0 });
    const c0 = known.connections;
    assert.equal((await d.check('nobody@example.org')).source, 'probe');
    assert.equal((await d.check('nobody@example.org')).source, 'probe');
    assert.equal((await d.check('carol@example.org')).source, 'probe');
    assert.equal((await d.check('carol@example.org')).source, 'cache');
    assert.equal(known.connections, c0 + 3);
  });

  test('a 451 is a tempfail and is not cached', async () => {
    const d = new RecipientDirectory(verifyConfig(), () => [target(busy.port)], { heloName: HELO, now: () => 0 });
    const c0 = busy.connections;
    for (let i = 0; i < 2; i++) {
      const r = await d.check('alice@example.org');
      assert.deepEqual({ verdict: r.verdict, source: r.source }, { verdict: 'tempfail', source: 'probe' });
      assert.match(r.detail ?? '', /451/);
    }
    assert.equal(busy.connections, c0 + 2);
  });

  test('fails over to the second server when the first is down', async () => {
    const d = new RecipientDirectory(verifyConfig(), () => [target(down), target(known.port)], { heloName: HELO, now: () => 0 });
    const c0 = known.connections;
    const r = await d.check('carol@example.org');
    assert.deepEqual({ verdict: r.verdict, source: r.source }, { verdict: 'accept', source: 'probe' });
    assert.match(r.detail ?? '', new RegExp(`:${known.port}: 250`));
    assert.equal(known.connections, c0 + 1);
  });

  test('fails over past a server that never answers, within its timeout', async () => {
    const silent = await silentServer();
    try {
      const d = new RecipientDirectory(verifyConfig({ timeoutMs: 150 }), () => [target(silent.port), target(known.port)], {
        heloName: HELO,
        now: () => 0,
      });
      const r = await d.check('alice@example.org');
      assert.equal(r.verdict, 'accept');
      assert.equal(silent.connections, 1);
    } finally {
      await silent.close();
    }
  });

  test('fails over past a 451 too, but stops at the first definite answer', async () => {
    const other = await startSink(); // would accept anyone
    try {
      const d = new RecipientDirectory(verifyConfig(), () => [target(busy.port), target(known.port), target(other.port)], {
        heloName: HELO,
        now: () => 0,
      });
      const r = await d.check('mallory@example.org');
      assert.deepEqual({ verdict: r.verdict, source: r.source }, { verdict: 'unknown', source: 'probe' });
      assert.equal(other.connections, 0, 'a definite "unknown" is not second-guessed');
    } finally {
      await other.close();
    }
  });

  test('fails closed: tempfail when every server fails, naming each', async () => {
    const d = new RecipientDirectory(verifyConfig(), () => [target(down), target(busy.port)], { heloName: HELO, now: () => 0 });
    const r = await d.check('alice@example.org');
    assert.equal(r.verdict, 'tempfail');
    assert.match(r.detail ?? '', new RegExp(`:${down}: 0 connect: .*ECONNREFUSED.*; 127\\.0\\.0\\.1:${busy.port}: 451`));
    const none = new RecipientDirectory(verifyConfig(), () => [], { heloName: HELO });
    assert.deepEqual(await none.check('alice@example.org'), { verdict: 'tempfail', source: 'probe', detail: 'no internal server configured' });
  });

  test('ten concurrent checks of one address share one probe', async () => {
    const d = new RecipientDirectory(verifyConfig(), () => [target(known.port)], { heloName: HELO, now: () => 0 });
    const c0 = known.connections;
    const results = await Promise.all(Array.from({ length: 10 }, () => d.check('bob@example.org')));
    assert.equal(known.connections, c0 + 1);
    assert.ok(results.every((r) => r.verdict === 'accept' && r.source === 'probe'));
    assert.equal((await d.check('bob@example.org')).source, 'cache');
    // Different addresses are not merged.
    await Promise.all([d.check('alice@example.org'), d.check('carol@example.org')]);
    assert.equal(known.connections, c0 + 3);
  });

  test('concurrent tempfails are shared too, and the next check probes again', async () => {
    const d = new RecipientDirectory(verifyConfig(), () => [target(busy.port)], { heloName: HELO, now: () => 0 });
    const c0 = busy.connections;
    const results = await Promise.all(Array.from({ length: 5 }, () => d.check('alice@example.org')));
    assert.ok(results.every((r) => r.verdict === 'tempfail'));
    assert.equal(busy.connections, c0 + 1);
    await d.check('alice@example.org');
    assert.equal(busy.connections, c0 + 2);
  });

  test('the cache is bounded and evicts the oldest entry first', async () => {
    const d = new RecipientDirectory(verifyConfig({ maxCacheEntries: 2 }), () => [target(known.port)], { heloName: HELO, now: () => 0 });
    const c0 = known.connections;
    await d.check('alice@example.org');
    await d.check('bob@example.org');
    await d.check('nobody@example.org'); // evicts alice
    assert.equal(known.connections, c0 + 3);
    assert.equal((await d.check('bob@example.org')).source, 'cache');
    assert.equal((await d.check('nobody@example.org')).source, 'cache');
    assert.equal((await d.check('alice@example.org')).source, 'probe'); // evicts bob
    assert.equal(known.connections, c0 + 4);
    assert.equal((await d.check('bob@example.org')).source, 'probe');
  });

  test('clear() forgets cached answers, and an answer from before clear() is not cached', async () => {
    const d = new RecipientDirectory(verifyConfig(), () => [target(known.port)], { heloName: HELO, now: () => 0 });
    await d.check('alice@example.org');
    assert.equal((await d.check('alice@example.org')).source, 'cache');
    d.clear();
    const pending = d.check('alice@example.org');
    d.clear(); // e.g. a configuration commit while the probe is under way
    assert.equal((await pending).source, 'probe');
    assert.equal((await d.check('alice@example.org')).source, 'probe');
    assert.equal((await d.check('alice@example.org')).source, 'cache');
  });

  test('asks servers in the order given and reads the server list at each check', async () => {
    let servers = [target(known.port)];
    const d = new RecipientDirectory(verifyConfig(), () => servers, { heloName: HELO, now: () => 0 });
    assert.equal((await d.check('alice@example.org')).verdict, 'accept');
    servers = [target(busy.port)];
    assert.equal((await d.check('bob@example.org')).verdict, 'tempfail');
  });
});

describe('mode "verify" with an injected probe', () => {
  test('a probe that throws or rejects is a tempfail, never an accept', async () => {
    const d = new RecipientDirectory(verifyConfig(), () => [target(1), target(2)], { heloName: HELO, probe: noProbe });
    const r = await d.check('alice@example.org');
    assert.equal(r.verdict, 'tempfail');
    assert.match(r.detail ?? '', /127\.0\.0\.1:1: probe threw: probe called; 127\.0\.0\.1:2: probe threw/);
  });

  test('a server list that throws is a tempfail', async () => {
    const d = new RecipientDirectory(
      verifyConfig(),
      () => {
        throw new Error('no config');
      },
      { heloName: HELO, probe: noProbe },
    );
    assert.equal((await d.check('alice@example.org')).verdict, 'tempfail');
  });

  test('passes the HELO name and timeout through, and the address unchanged', async () => {
    const seen: unknown[] = [];
    const probe: typeof probeRecipient = async (t, address, opts) => {
      seen.push([t.port, address, opts]);
      return { verdict: 'exists', code: 250, reply: '250 ok', server: `x:${t.port}` };
    };
    const d = new RecipientDirectory(verifyConfig({ timeoutMs: 1234 }), () => [target(25)], { heloName: HELO, probe });
    assert.equal((await d.check('Alice@example.org')).verdict, 'accept');
    assert.deepEqual(seen, [[25, 'Alice@example.org', { heloName: HELO, timeoutMs: 1234 }]]);
  });
});
