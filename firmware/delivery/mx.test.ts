import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DnsResolver } from '../dns/resolver.ts';
import { startDns, type Zone } from '../../test/helpers/dns.ts';
import { resolveMx } from './mx.ts';

const zone: Zone = {
  'example.net': { MX: [{ exchange: 'mx2.example.net', priority: 20 }, { exchange: 'mx1.example.net', priority: 10 }] },
  'mx1.example.net': { A: ['127.0.0.11'] },
  'mx2.example.net': { A: ['127.0.0.12', '127.0.0.13'] },
  'equal.example': { MX: [{ exchange: 'a.equal.example', priority: 5 }, { exchange: 'b.equal.example', priority: 5 }, { exchange: 'c.equal.example', priority: 5 }] },
  'a.equal.example': { A: ['127.0.0.21'] },
  'b.equal.example': { A: ['127.0.0.22'] },
  'c.equal.example': { A: ['127.0.0.23'] },
  'implicit.example': { A: ['127.0.0.31'] },
  'nomail.example': { MX: [{ exchange: '.', priority: 0 }] },
  'empty.example': { TXT: ['v=spf1 -all'] },
  'dangling.example': { MX: [{ exchange: 'gone.dangling.example', priority: 10 }] },
  'us.example': { MX: [{ exchange: 'mx.us.example', priority: 10 }, { exchange: 'backup.us.example', priority: 20 }] },
  'mx.us.example': { A: ['127.0.0.41'] },
  'backup.us.example': { A: ['127.0.0.42'] },
  'half.example': { MX: [{ exchange: 'ok.half.example', priority: 10 }, { exchange: 'slow.half.example', priority: 5 }] },
  'ok.half.example': { A: ['127.0.0.51'] },
};

async function withDns(fn: (resolve: DnsResolver['resolve']) => Promise<void>, opts: Parameters<typeof startDns>[1] = {}) {
  const dns = await startDns(zone, opts);
  try {
    const r = new DnsResolver({ servers: [dns.server], timeoutMs: 500, cacheEntries: 100, maxTtlMs: 60_000, negativeTtlMs: 60_000 });
    await fn(r.resolve);
  } finally {
    await dns.close();
  }
}

test('MX hosts by preference, every address of each, through a real DNS server on loopback', async () => {
  await withDns(async (resolve) => {
    assert.deepEqual(await resolveMx('Example.NET.', resolve), {
      kind: 'hosts',
      hosts: [
        { host: 'mx1.example.net', preference: 10, addresses: ['127.0.0.11'] },
        { host: 'mx2.example.net', preference: 20, addresses: ['127.0.0.12', '127.0.0.13'] },
      ],
    });
  });
});

test('equal preferences come in random order (every order appears), never mixed with other preferences', async () => {
  await withDns(async (resolve) => {
    const seen = new Set<string>();
    let seed = 1;
    const random = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
    for (let i = 0; i < 60; i++) {
      const r = await resolveMx('equal.example', resolve, { random });
      assert.equal(r.kind, 'hosts');
      if (r.kind === 'hosts') seen.add(r.hosts.map((h) => h.host[0]).join(''));
    }
    assert.equal(seen.size, 6, `orders seen: ${[...seen].join(' ')}`);
  });
});

test('no MX: the implicit MX (the domain itself); null MX and no such domain are permanent', async () => {
  await withDns(async (resolve) => {
    assert.deepEqual(await resolveMx('implicit.example', resolve), { kind: 'hosts', hosts: [{ host: 'implicit.example', preference: 0, addresses: ['127.0.0.31'], implicit: true }] });
    assert.equal((await resolveMx('nomail.example', resolve) as { reason?: string }).reason, 'null-mx');
    assert.equal((await resolveMx('nowhere.example', resolve) as { reason?: string }).reason, 'no-such-domain');
    assert.equal((await resolveMx('empty.example', resolve) as { reason?: string }).reason, 'no-address');
    assert.equal((await resolveMx('dangling.example', resolve) as { reason?: string }).reason, 'no-address');
  });
});

test('moat among the exchanges: only better hosts are kept; moat the best is a loop', async () => {
  await withDns(async (resolve) => {
    const r = await resolveMx('us.example', resolve, { self: ['backup.us.example'] });
    assert.deepEqual(r.kind === 'hosts' && r.hosts.map((h) => h.host), ['mx.us.example']);
    assert.equal((await resolveMx('us.example', resolve, { self: ['MX.us.example.'] }) as { reason?: string }).reason, 'mx-loop');
  });
});

test('DNS failures are temporary, never "no such domain": SERVFAIL, no answer (timeout)', async () => {
  await withDns(
    async (resolve) => {
      assert.equal((await resolveMx('broken.example', resolve)).kind, 'temporary');
      assert.equal((await resolveMx('silent.example', resolve)).kind, 'temporary');
      // one host's address lookup times out: the other host is used
      const r = await resolveMx('half.example', resolve);
      assert.deepEqual(r.kind === 'hosts' && r.hosts.map((h) => h.host), ['ok.half.example']);
    },
    { servfail: ['broken.example'], silent: ['silent.example', 'slow.half.example'] },
  );
});

test('hasNullMx: true only for a null MX answered now; normal MX, no domain and DNS failure are false', async () => {
  const { hasNullMx } = await import('./mx.ts');
  await withDns(
    async (resolve) => {
      assert.equal(await hasNullMx('nomail.example.', resolve), true);
      assert.equal(await hasNullMx('example.net', resolve), false);
      assert.equal(await hasNullMx('nowhere.example', resolve), false);
      assert.equal(await hasNullMx('broken.example', resolve), false);
    },
    { servfail: ['broken.example'] },
  );
});
