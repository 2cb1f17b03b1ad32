import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig, ConfigError } from './schema.ts';
import { renderNetworkFiles, writeNetworkFiles } from './network-files.ts';

const base = (network: unknown) => parseConfig({ hostname: 'mx.example.com', inbound: { localDomains: ['example.com'] }, internal: { servers: [{ host: '10.0.0.5' }] }, storage: { dataDir: '/x' }, network });

test('a static address becomes a systemd-networkd unit, resolv.conf, hostname and timesyncd settings', () => {
  const c = base({ mode: 'static', address: '192.0.2.10', prefix: 24, gateway: '192.0.2.1', dnsServers: ['192.0.2.53', '2001:db8::53'], ntpServers: ['ntp.example.com'], hostname: 'moat1' });
  const files = Object.fromEntries(renderNetworkFiles(c.network, c.hostname).map((f) => [f.path, f.content]));
  assert.deepEqual(Object.keys(files).sort(), ['etc/hostname', 'etc/resolv.conf', 'etc/systemd/network/10-moat.network', 'etc/systemd/timesyncd.conf.d/moat.conf']);
  assert.match(files['etc/systemd/network/10-moat.network']!, /\[Match\]\nName=eth0\n\n\[Network\]\nAddress=192\.0\.2\.10\/24\nGateway=192\.0\.2\.1\nDNS=192\.0\.2\.53\nDNS=2001:db8::53\nNTP=ntp\.example\.com\n$/);
  assert.equal(files['etc/hostname'], 'moat1\n');
  assert.match(files['etc/resolv.conf']!, /\nnameserver 192\.0\.2\.53\nnameserver 2001:db8::53\n$/);
  assert.match(files['etc/systemd/timesyncd.conf.d/moat.conf']!, /\[Time\]\nNTP=ntp\.example\.com\n$/);
});

test('DHCP without DNS servers leaves resolv.conf to DHCP; the host name defaults to the first label', () => {
  const c = base({});
  const files = Object.fromEntries(renderNetworkFiles(c.network, c.hostname).map((f) => [f.path, f.content]));
  assert.match(files['etc/systemd/network/10-moat.network']!, /\[Network\]\nDHCP=yes\n$/);
  assert.equal(files['etc/resolv.conf'], undefined);
  assert.equal(files['etc/hostname'], 'mx\n');
});

test('network settings are checked with their path', () => {
  assert.throws(() => base({ mode: 'static' }), (e: ConfigError) => e.problems.join() === 'network.address: mode "static" needs it,network.prefix: mode "static" needs it');
  assert.throws(() => base({ mode: 'static', address: '192.0.2.1', prefix: 33 }), /network\.prefix: 33 is too long for 192\.0\.2\.1/);
  assert.throws(() => base({ interface: 'eth0; rm -rf /' }), /network\.interface: expected an interface name/);
  assert.throws(() => base({ dnsServers: ['dns.example.com'] }), /network\.dnsServers\.0: expected an IP address/);
  assert.throws(() => base({ hostname: 'a.b' }), /network\.hostname: expected a single host name label/);
});

test('files are written under filesRoot, world-readable, and only when their content changed', async () => {
  const root = await mkdtemp(join(tmpdir(), 'moat-net-'));
  try {
    const c = base({ mode: 'static', address: '192.0.2.10', prefix: 24, filesRoot: root });
    const first = await writeNetworkFiles(c.network, c.hostname);
    assert.equal(first.length, 4);
    assert.equal((await stat(join(root, 'etc/hostname'))).mode & 0o777, 0o644);
    assert.deepEqual(await writeNetworkFiles(c.network, c.hostname), [], 'nothing rewritten');
    const d = base({ mode: 'static', address: '192.0.2.11', prefix: 24, filesRoot: root });
    assert.deepEqual(await writeNetworkFiles(d.network, d.hostname), [join(root, 'etc/systemd/network/10-moat.network')]);
    assert.match(await readFile(join(root, 'etc/systemd/network/10-moat.network'), 'utf8'), /Address=192\.0\.2\.11\/24/);
    assert.deepEqual(await writeNetworkFiles(base({}).network, 'mx.example.com'), [], 'empty filesRoot: nothing written');
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
