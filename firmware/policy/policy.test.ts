// The policy's parts on their own: the chain runner (first definite answer wins,
// fail closed on a throw or a timeout, tags add up), the tarpit schedule, the DNSBL
// name and answer ranges, the GTUBE scanner at every split, the bounded trackers,
// the header sanitiser, and the configuration of the chains.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PhaseChain, newTransaction, totalScore, type Check, type PolicyContext } from './chain.ts';
import { AbuseTracker, WindowCounter } from './abuse-tracker.ts';
import { reverseName, parseRanges } from './checks/dnsbl.ts';
import { GtubeStage, GTUBE } from './checks/gtube.ts';
import { safeHeaderBlock } from './checks/authentication.ts';
import { literalAddress } from './checks/helo.ts';
import { matchesSuffix } from './checks/sender-domains.ts';
import { clientNetwork } from './checks/greylist.ts';
import { CHECK_NAMES, CHECK_PHASES } from './check-names.ts';
import { REGISTRY } from './registry.ts';
import { Policy, clientAddress } from './policy.ts';
import { PolicyReplies } from './replies.ts';
import { parseConfig, ConfigError } from '../config/schema.ts';
import { DnsResolver } from '../dns/resolver.ts';
import { silentLogger } from '../log/logger.ts';

const log = silentLogger();

function ctx(): PolicyContext {
  return { cid: 'c1', ip: '192.0.2.7', localAddress: '192.0.2.1', internal: false, helo: 'client.example.net', tx: newTransaction(), sessionScore: [], heloScore: [] };
}

const check = (name: string, run: Check['run']): Check => ({ name, run });

test('chain: the first definite answer wins and later checks are not asked', async () => {
  const asked: string[] = [];
  const chain = new PhaseChain(
    'mail',
    [
      check('a', () => (asked.push('a'), { action: 'continue' })),
      check('b', () => (asked.push('b'), { action: 'reject', reply: PolicyReplies.senderDenied(), reason: 'no' })),
      check('c', () => (asked.push('c'), { action: 'accept', reason: 'yes' })),
    ],
    1000,
    log,
  );
  const r = await chain.run(ctx());
  assert.equal(r.verdict, 'refuse');
  assert.deepEqual(asked, ['a', 'b']);
  const accepted = await new PhaseChain('mail', [check('x', () => ({ action: 'accept', reason: 'ok' })), check('y', () => assert.fail('asked after accept'))], 1000, log).run(ctx());
  assert.deepEqual(accepted, { verdict: 'accept', check: 'x' });
});

test('chain: a check that throws, rejects its promise or does not answer in time yields 451 4.7.0, never continue', async () => {
  const failing: Check[] = [
    check('throws', () => {
      throw new Error('boom');
    }),
    check('rejects', async () => {
      throw new Error('boom');
    }),
    check('hangs', () => new Promise(() => undefined)),
  ];
  for (const c of failing) {
    const r = await new PhaseChain('rcpt', [c, check('after', () => ({ action: 'accept', reason: 'never' }))], 50, log).run(ctx());
    assert.equal(r.verdict, 'refuse', c.name);
    assert.equal(r.verdict === 'refuse' && r.reply.responseCode, 451, c.name);
    assert.equal(r.verdict === 'refuse' && r.reply.message, '4.7.0 Policy check unavailable, try again later', c.name);
  }
});

test('chain: tags add up, connect and HELO points belong to the session, later ones to the transaction', async () => {
  const c = ctx();
  await new PhaseChain('connect', [check('dnsbl', () => ({ action: 'tag', reason: 'listed', score: 2.5 }))], 1000, log).run(c);
  await new PhaseChain('helo', [check('helo', () => ({ action: 'tag', reason: 'odd', score: 1 }))], 1000, log).run(c);
  await new PhaseChain('mail', [check('spf', () => ({ action: 'tag', reason: 'softfail', score: 3 }))], 1000, log).run(c);
  assert.equal(totalScore(c), 6.5);
  c.tx = newTransaction();
  assert.equal(totalScore(c), 3.5, 'a new transaction keeps the session points only');
});

function configWith(policy: unknown) {
  return parseConfig({
    hostname: 'mx.example.com',
    inbound: { localDomains: ['example.com'] },
    internal: { servers: [{ host: '127.0.0.1' }] },
    storage: { dataDir: '/nonexistent' },
    policy,
  });
}

test('harvest: the tarpit delay doubles from tarpitAfter up to tarpitMaxMs; dropAfter blocks the address; others are untouched', async () => {
  const config = configWith({ chain: { rcpt: ['harvest'] }, harvest: { tarpitAfter: 2, tarpitMs: 100, tarpitMaxMs: 350, dropAfter: 6 } });
  const p = new Policy(config, new DnsResolver(config.dns), log);
  const harvest = REGISTRY.harvest({ config, resolver: new DnsResolver(config.dns), tracker: p.tracker, log, localDomains: new Set(), now: Date.now });
  const close = p.opened({ id: 's1', remoteAddress: '::ffff:198.51.100.9', localAddress: '::ffff:192.0.2.1' });
  p.opened({ id: 's2', remoteAddress: '198.51.100.10' });
  const delays: number[] = [];
  for (let i = 0; i < 6; i++) {
    const d = (await harvest.run({ ...ctx(), ip: '198.51.100.9' }, 'rcpt')) as { delayMs?: number };
    delays.push(d.delayMs ?? 0);
    if (i < 5) assert.equal(p.unknownRecipient('s1'), null, `unknown recipient ${i + 1} is answered normally`);
  }
  assert.deepEqual(delays, [0, 0, 100, 200, 350, 350]);
  assert.equal(p.unknownRecipient('s1')?.message, '4.7.0 Too many unknown recipients, closing connection');
  assert.equal(p.tracker.blocked('198.51.100.9'), 'harvest');
  assert.equal(p.tracker.blocked('198.51.100.10'), null);
  close();
  assert.equal(p.tracker.concurrent('198.51.100.9'), 0);
});

test('greylist: first attempt 450, too early 450, after delayMs passes and keeps passing; an unretried triplet is forgotten', async () => {
  const config = configWith({ chain: { rcpt: ['greylist'] }, greylist: { delayMs: 60_000, retryWindowMs: 3_600_000, passMs: 86_400_000 } });
  let now = 1_000_000;
  const g = REGISTRY.greylist({ config, resolver: new DnsResolver(config.dns), tracker: new AbuseTracker({ rateWindowMs: 1000, harvestWindowMs: 1000, relayWindowMs: 1000, maxTracked: 100 }), log, localDomains: new Set(), now: () => now });
  const attempt = async (ip: string, from = 'a@sender.test') => {
    const c = ctx();
    const d = await g.run({ ...c, ip, tx: { ...c.tx, from: { address: from, domain: 'sender.test' }, rcpt: { address: 'user@example.com', domain: 'example.com' } } }, 'rcpt');
    return d.action === 'tempfail' ? `${d.reply.responseCode} ${d.reply.message}` : d.action;
  };
  assert.equal(await attempt('192.0.2.10'), '450 4.7.1 Greylisted, please try again later');
  now += 30_000;
  assert.equal(await attempt('192.0.2.10'), '450 4.7.1 Greylisted, please try again later', 'too early');
  now += 31_000;
  assert.equal(await attempt('192.0.2.99'), 'continue', 'a retry from the same /24 passes');
  now += 80_000_000;
  assert.equal(await attempt('192.0.2.10'), 'continue', 'and keeps passing within passMs of its last use');
  assert.equal(await attempt('192.0.2.10', 'b@sender.test'), '450 4.7.1 Greylisted, please try again later', 'another sender is another triplet');
  now += 3_600_001;
  assert.equal(await attempt('192.0.2.10', 'b@sender.test'), '450 4.7.1 Greylisted, please try again later', 'not retried within the window: starts again');
  assert.equal(clientNetwork('2001:db8:1:2:3:4:5:6'), '2001:db8:1:2');
  assert.equal(clientNetwork('2001:db8::1'), '2001:db8:0:0');
});

test('DNSBL names: reversed IPv4 octets, reversed IPv6 nibbles; answer ranges', () => {
  assert.equal(reverseName('192.0.2.99'), '99.2.0.192');
  assert.equal(reverseName('2001:db8::1'), '1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2');
  assert.equal(reverseName('not-an-ip'), null);
  assert.deepEqual(parseRanges(['127.0.0.2-127.0.0.11', '127.0.0.20']), [
    [0x7f000002, 0x7f00000b],
    [0x7f000014, 0x7f000014],
  ]);
  assert.equal(clientAddress('::ffff:10.1.2.3'), '10.1.2.3');
  assert.equal(clientAddress('2001:db8::1'), '2001:db8::1');
});

test('GTUBE is found whatever the split, in 1- and 2-byte chunks, and not in a near miss', () => {
  const text = Buffer.from(`Subject: x\r\n\r\nhello ${GTUBE.toString('latin1')} bye\r\n`, 'latin1');
  for (let cut = 0; cut <= text.length; cut++) {
    const s = new GtubeStage();
    s.push(text.subarray(0, cut));
    s.push(text.subarray(cut));
    assert.ok(s.found, `split at ${cut}`);
  }
  for (const size of [1, 2, 3, 67, 68]) {
    const s = new GtubeStage();
    for (let i = 0; i < text.length; i += size) s.push(text.subarray(i, i + size));
    assert.ok(s.found, `chunks of ${size}`);
  }
  const near = Buffer.from(text.toString('latin1').replace('GTUBE-STANDARD', 'GTUBE-STANDARX'), 'latin1');
  for (const size of [1, 5, 70]) {
    const s = new GtubeStage();
    for (let i = 0; i < near.length; i += size) s.push(near.subarray(i, i + size));
    assert.ok(!s.found, `near miss in chunks of ${size}`);
    assert.equal(s.end(), null, 'the stage never refuses by itself');
  }
  // chunks pass by reference and are not changed
  const chunk = Buffer.from(text);
  const before = Buffer.from(chunk);
  new GtubeStage().push(chunk);
  assert.deepEqual(chunk, before);
});

test('trackers are bounded: the oldest address is forgotten first; windows expire', () => {
  let now = 0;
  const w = new WindowCounter(1000, 3, () => now);
  for (const ip of ['a', 'b', 'c', 'd']) w.hit(ip);
  assert.equal(w.size, 3);
  assert.equal(w.count('a'), 0, 'the oldest was dropped');
  assert.equal(w.hit('d'), 2);
  now = 1000;
  assert.equal(w.count('d'), 0, 'the window expired');
  const t = new AbuseTracker({ rateWindowMs: 1000, harvestWindowMs: 1000, relayWindowMs: 1000, maxTracked: 100, now: () => now });
  for (let i = 0; i < 500; i++) t.block(`10.0.${i >> 8}.${i & 255}`, 5000, 'x');
  assert.equal(t.blocked('10.0.0.0'), null, 'only the newest 100 blocks are kept');
  assert.equal(t.blocked('10.0.1.243'), 'x');
  now += 5000;
  assert.equal(t.blocked('10.0.1.243'), null, 'a block ends');
});

test('a policy built for a new configuration takes over the tracker: blocks, open connections, counts and greylist entries stay; the new bound trims', async () => {
  const before = configWith({ chain: { rcpt: ['greylist'] }, connections: { maxTracked: 1000 } });
  const p1 = new Policy(before, new DnsResolver(before.dns), log);
  const close = p1.opened({ id: 's1', remoteAddress: '198.51.100.7' });
  p1.tracker.block('198.51.100.66', 60_000, 'harvest');
  p1.tracker.relayAttempts.hit('198.51.100.8');
  const g = REGISTRY.greylist({ config: before, resolver: new DnsResolver(before.dns), tracker: p1.tracker, log, localDomains: new Set(), now: Date.now });
  assert.equal((await g.run({ ...ctx(), ip: '198.51.100.9', tx: { ...ctx().tx, from: { address: 'a@b.example', domain: 'b.example' }, rcpt: { address: 'x@example.com', domain: 'example.com' } } }, 'rcpt')).action, 'tempfail');

  const after = configWith({ chain: { rcpt: ['greylist'] }, connections: { maxTracked: 100 }, blocks: { windowMs: 5000 } });
  const p2 = new Policy(after, new DnsResolver(after.dns), log, { tracker: p1.tracker });
  assert.equal(p2.tracker, p1.tracker);
  assert.equal(p2.tracker.blocked('198.51.100.66'), 'harvest', 'the block survives the commit');
  assert.equal(p2.tracker.concurrent('198.51.100.7'), 1, 'the session of the old configuration still counts');
  assert.equal(p2.tracker.relayAttempts.count('198.51.100.8'), 1);
  assert.equal(p2.tracker.greylist.size, 1, 'greylist entries are kept');
  close();
  assert.equal(p2.tracker.concurrent('198.51.100.7'), 0, 'and releases into the same tracker');
  p2.takeOver();
  for (let i = 0; i < 100; i++) p2.tracker.relayAttempts.hit(`10.0.0.${i}`);
  assert.equal(p2.tracker.relayAttempts.count('198.51.100.8'), 0, 'the new bound (100) forgot the oldest');
  assert.equal(p2.tracker.relayAttempts.count('10.0.0.99'), 1);
});

test('added header fields: CRLF only, no control characters, no line that is not a field or a fold', () => {
  assert.equal(safeHeaderBlock('A: 1\r\n b\nC: 2\rEvil\x00: x\r\n'), 'A: 1\r\n b\r\nC: 2\r\nEvil: x\r\n');
  assert.equal(safeHeaderBlock(' orphan fold\r\nnot a header line\r\nX: y'), 'X: y\r\n');
  assert.equal(safeHeaderBlock(''), '');
});

test('HELO literals and sender suffixes', () => {
  assert.equal(literalAddress('[192.0.2.1]'), '192.0.2.1');
  assert.equal(literalAddress('[IPv6:2001:DB8::1]'), '2001:db8::1');
  assert.equal(literalAddress('[2001:db8::1]'), null, 'IPv6 needs its tag');
  assert.equal(literalAddress('[999.0.0.1]'), null);
  assert.equal(matchesSuffix('Mail.Spam.Example', ['spam.example']), 'spam.example');
  assert.equal(matchesSuffix('notspam.example', ['spam.example']), null);
});

test('every check name has a module, and every module a name', () => {
  assert.deepEqual(Object.keys(REGISTRY).sort(), [...CHECK_NAMES].sort());
});

const base = { hostname: 'mx.example.com', inbound: { localDomains: ['example.com'] }, internal: { servers: [{ host: '127.0.0.1' }] }, storage: { dataDir: '/x' } };
function problems(policy: unknown, dns?: unknown): string[] {
  try {
    parseConfig({ ...base, policy, ...(dns ? { dns } : {}) });
    return [];
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    return e.problems;
  }
}

test('configuration: unknown checks, checks in the wrong phase, duplicates and bad values are refused by name', () => {
  assert.deepEqual(problems({ chain: { connect: ['dnsbl', 'nonsense'] } }), [`policy.chain.connect.1: unknown check "nonsense"; known: ${CHECK_NAMES.join(', ')}`]);
  assert.deepEqual(problems({ chain: { connect: ['harvest'] } }), [`policy.chain.connect.0: harvest cannot run in the connect phase (only ${CHECK_PHASES.harvest.join(', ')})`]);
  assert.deepEqual(problems({ chain: { data: ['gtube', 'gtube'] } }), ['policy.chain.data.1: gtube is listed twice']);
  assert.match(problems({ dnsbl: { zones: [{ zone: 'bl.test', answers: ['127.0.0.2-x'] }] } })[0]!, /^policy\.dnsbl\.zones\.0\.answers\.0: expected an IPv4 address or a range/);
  assert.match(problems({ spf: { fail: 'explode' } })[0]!, /^policy\.spf\.fail: /);
  assert.match(problems({ harvest: { tarpitMs: -1 } })[0]!, /^policy\.harvest\.tarpitMs: /);
  assert.match(problems({}, { servers: ['dns.example:53'] })[0]!, /^dns\.servers\.0: expected ADDRESS or ADDRESS:PORT/);
  assert.deepEqual(problems({ chain: { connect: ['blocks', 'connection-limits', 'dnsbl'], data: ['authentication', 'gtube', 'spam-score'] } }), []);
});

test('HELO points count once however often the client says HELO; the spam headers name the checks', async () => {
  const config = configWith({ chain: { helo: ['helo'], data: ['spam-score'] }, helo: { bareIp: 'tag', score: 2 } });
  const p = new Policy(config, new DnsResolver(config.dns), log);
  p.opened({ id: 's1', remoteAddress: '198.51.100.9', localAddress: '192.0.2.1' });
  assert.equal(await p.helo('s1', '198.51.100.9'), null);
  assert.equal(await p.helo('s1', '198.51.100.9'), null);
  assert.equal(await p.mail('s1', { address: 'a@b.example', domain: 'b.example' }), null);
  const r = await p.dataEnd('s1', () => Promise.reject(new Error('the body is not needed')));
  assert.equal(r.reply, null);
  assert.equal(r.headers, 'X-Spam-Score: 2.0\r\nX-Spam-Status: No, score=2.0 tagged_above=5 rejected_above=15 tests=helo=2\r\n');
});

test('the policy example in the README is a valid configuration', async () => {
  const { readFileSync } = await import('node:fs');
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const block = [...readme.matchAll(/```json\n([\s\S]*?)```/g)].map((m) => m[1]!).find((b) => b.includes('"policy"'));
  assert.ok(block, 'the README has a JSON example of the policy');
  const example = JSON.parse(block) as { dns: unknown; policy: unknown };
  const config = parseConfig({ ...base, dns: example.dns, policy: example.policy });
  assert.deepEqual(config.policy.chain.data, ['authentication', 'gtube', 'rspamd', 'spam-score']);
  const p = new Policy(config, new DnsResolver(config.dns), log);
  assert.deepEqual(p.names('connect'), ['blocks', 'connection-limits', 'dnsbl']);
});

test('every decision is logged with the check, the decision and the reason', async () => {
  const { Writable } = await import('node:stream');
  const { createLogger } = await import('../log/logger.ts');
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  const logged = createLogger('debug', sink as never);
  const config = configWith({ chain: { helo: ['helo'], mail: ['sender-domains', 'message-rate'] }, helo: { bareIp: 'tag' }, senders: { deny: ['spam.example'] } });
  const p = new Policy(config, new DnsResolver(config.dns), logged);
  p.opened({ id: 's1', remoteAddress: '198.51.100.9', localAddress: '192.0.2.1' });
  await p.helo('s1', '198.51.100.9');
  await p.mail('s1', { address: 'a@spam.example', domain: 'spam.example' });
  await new Promise((r) => setImmediate(r));
  const decisions = lines.filter((l) => l.ev === 'policy').map((l) => [l.phase, l.check, l.decision, l.reason]);
  assert.deepEqual(decisions, [
    ['helo', 'helo', 'tag', 'helo-bare-ip'],
    ['mail', 'sender-domains', 'reject', 'deny-list: spam.example'],
  ]);
  assert.equal(lines.find((l) => l.decision === 'reject')?.code, 554);
});
