// The resolver against a real DNS server on loopback: answers, TTL cache, negative
// cache, timeout, shared in-flight queries, bounded cache, bad names.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DnsResolver, isDnsServer } from './resolver.ts';
import { startDns } from '../../test/helpers/dns.ts';

const settings = (server: string) => ({ servers: [server], timeoutMs: 500, cacheEntries: 100, maxTtlMs: 3_600_000, negativeTtlMs: 60_000 });

test('answers A and TXT from the configured server, and caches them', async () => {
  const dns = await startDns({
    'a.test': { A: ['192.0.2.1', '192.0.2.2'], ttl: 60 },
    't.test': { TXT: ['v=spf1 -all', 'x'.repeat(300)] },
  });
  try {
    let now = 1_000_000;
    const r = new DnsResolver(settings(dns.server), { now: () => now });
    assert.deepEqual((await r.resolve('A.test', 'A')).sort(), ['192.0.2.1', '192.0.2.2']);
    const txt = (await r.resolve('t.test', 'TXT')) as string[][];
    assert.deepEqual(txt.map((t) => t.join('')).sort(), ['v=spf1 -all', 'x'.repeat(300)].sort());
    await r.resolve('a.test.', 'A');
    assert.equal(r.queries, 2, 'the second A lookup came from the cache');
    now += 61_000; // past the record's TTL of 60 s
    await r.resolve('a.test', 'A');
    assert.equal(r.queries, 3, 'an expired answer is asked again');
    assert.equal(dns.asked.filter((q) => q === 'A a.test').length, 2);
  } finally {
    await dns.close();
  }
});

test('no such name is an ENOTFOUND error, cached for negativeTtlMs', async () => {
  const dns = await startDns({});
  try {
    const r = new DnsResolver(settings(dns.server));
    await assert.rejects(r.resolve('nx.test', 'A'), { code: 'ENOTFOUND' });
    await assert.rejects(r.resolve('nx.test', 'A'), { code: 'ENOTFOUND' });
    assert.equal(r.queries, 1);
  } finally {
    await dns.close();
  }
});

test('a server that does not answer gives ETIMEOUT after timeoutMs, and nothing is cached', async () => {
  const dns = await startDns({}, { silent: ['slow.test'] });
  try {
    const r = new DnsResolver(settings(dns.server));
    await assert.rejects(r.resolve('x.slow.test', 'A'), { code: 'ETIMEOUT' });
    assert.equal(r.cached, 0);
  } finally {
    await dns.close();
  }
});

test('concurrent lookups of one name share one query', async () => {
  const dns = await startDns({ 'a.test': { A: ['192.0.2.1'] } });
  try {
    const r = new DnsResolver(settings(dns.server));
    await Promise.all([r.resolve('a.test'), r.resolve('a.test'), r.resolve('A.TEST')]);
    assert.equal(r.queries, 1);
  } finally {
    await dns.close();
  }
});

test('the cache holds at most cacheEntries answers', async () => {
  const zone: Record<string, { A: string[] }> = {};
  for (let i = 0; i < 10; i++) zone[`h${i}.test`] = { A: ['192.0.2.1'] };
  const dns = await startDns(zone);
  try {
    const r = new DnsResolver({ ...settings(dns.server), cacheEntries: 3 });
    for (let i = 0; i < 10; i++) await r.resolve(`h${i}.test`);
    assert.equal(r.cached, 3);
  } finally {
    await dns.close();
  }
});

test('bad names and types are refused without a query', async () => {
  const r = new DnsResolver(settings('127.0.0.1:9'));
  await assert.rejects(r.resolve('', 'A'), { code: 'EBADNAME' });
  await assert.rejects(r.resolve('x'.repeat(300), 'A'), { code: 'EBADNAME' });
  await assert.rejects(r.resolve('a.test', 'ANY'), { code: 'ENOTIMP' });
  assert.equal(r.queries, 0);
});

test('server settings: address with or without a port', () => {
  for (const ok of ['127.0.0.1', '127.0.0.1:5353', '[::1]:53', '::1']) assert.ok(isDnsServer(ok), ok);
  for (const bad of ['localhost', '127.0.0.1:0', '127.0.0.1:70000', '[127.0.0.1]:53', '1.2.3:53', '']) assert.ok(!isDnsServer(bad), bad);
});
