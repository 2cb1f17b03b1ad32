// Broken values of the scan and outbound settings get an error naming the setting; good ones
// come back normalised.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig, ConfigError, type ConfigInput } from './schema.ts';

const base = {
  hostname: 'mx.example.com',
  inbound: { localDomains: ['example.com'] },
  internal: { servers: [{ host: '10.0.0.5', port: 2222 }] },
  storage: { dataDir: '/var/lib/moat' },
};

function problems(extra: Partial<ConfigInput>): string[] {
  try {
    parseConfig({ ...base, ...extra });
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return e.problems;
  }
  return [];
}

test('scan settings: bad values are named by their path', () => {
  const cases: Array<[Partial<ConfigInput>, RegExp]> = [
    [{ scan: { rules: [{ name: 'r', header: { field: 'Subject', pattern: '(' }, action: 'reject' }] } }, /^scan\.rules\.0\.header\.pattern: not a valid regular expression/],
    [{ scan: { rules: [{ name: 'r', action: 'tag' }] } }, /^scan\.rules\.0: give either header or body/],
    [{ scan: { rules: [{ name: 'r', body: 'abcd', header: { field: 'x', pattern: 'y' }, action: 'tag' }] } }, /^scan\.rules\.0: give either header or body/],
    [{ scan: { rules: [{ name: 'r', body: 'abc', action: 'tag' }] } }, /^scan\.rules\.0\.body: /],
    [{ scan: { rules: [{ name: 'a b', body: 'abcd', action: 'tag' }] } }, /^scan\.rules\.0\.name: expected a rule name/],
    [{ scan: { rules: [{ name: 'r', body: 'abcd', action: 'tag' }, { name: 'r', body: 'efgh', action: 'reject' }] } }, /^scan\.rules: rule names must be unique/],
    [{ scan: { rules: Array.from({ length: 101 }, (_, i) => ({ name: `r${i}`, body: `lit-${i}`, action: 'tag' as const })) } }, /^scan\.rules: at most 100 body rules/],
    [{ scan: { attachments: { blockedExtensions: ['ex e'] } } }, /^scan\.attachments\.blockedExtensions\.0: expected a file extension/],
    [{ scan: { attachments: { blockedTypes: ['video'] } } }, /^scan\.attachments\.blockedTypes\.0: expected a media type/],
    [{ scan: { signatures: { files: ['/x/sigs.txt'] } } }, /^scan\.signatures\.files\.0: expected a \.ndb, \.hdb or \.hsb file/],
    [{ scan: { clamd: { address: 'clamd' } } }, /^scan\.clamd\.address: expected a unix socket path or HOST:PORT/],
    [{ scan: { clamd: { address: '127.0.0.1:99999' } } }, /^scan\.clamd\.address: /],
    [{ scan: { mime: { maxDepth: 0 } } }, /^scan\.mime\.maxDepth: /],
  ];
  for (const [extra, want] of cases) {
    const p = problems(extra);
    assert.ok(p.some((x) => want.test(x)), `${JSON.stringify(extra).slice(0, 80)} → ${p.join(' | ') || 'accepted'}`);
  }
});

test('scan settings: good values are normalised (extensions without dot, lower case; header field lower case)', () => {
  const c = parseConfig({
    ...base,
    scan: {
      attachments: { blockedExtensions: ['.EXE'], blockedTypes: ['Video/*'] },
      rules: [{ name: 'r', header: { field: 'Subject', pattern: 'x' }, action: 'tag' }],
      clamd: { address: '/run/clamav/clamd.ctl' },
    },
  });
  assert.deepEqual(c.scan.attachments.blockedExtensions, ['exe']);
  assert.deepEqual(c.scan.attachments.blockedTypes, ['video/*']);
  assert.equal(c.scan.rules[0]!.header!.field, 'subject');
  assert.equal(c.scan.clamd!.onFailure, 'tempfail');
});

test('outbound settings: bad users, DKIM entries and header names are named by their path', () => {
  const cases: Array<[Partial<ConfigInput>, RegExp]> = [
    [{ outbound: { users: [{ name: 'laptop', passwordHash: 'plain-text' }] } }, /^outbound\.users\.0\.passwordHash: expected a scrypt hash/],
    [{ outbound: { users: [{ name: 'a b', passwordHash: 'scrypt$16384$8$1$c2FsdA==$aGFzaA==' }] } }, /^outbound\.users\.0\.name: /],
    [{ outbound: { dkim: [{ domain: 'example', selector: 's', keyFile: '/k.pem' }] } }, /^outbound\.dkim\.0\.domain: /],
    [{ outbound: { dkim: [{ domain: 'example.com', selector: 'bad selector', keyFile: '/k.pem' }] } }, /^outbound\.dkim\.0\.selector: expected a DKIM selector/],
    [{ outbound: { removeHeaders: ['Bad:Name'] } }, /^outbound\.removeHeaders\.0: expected a header field name/],
    [{ outbound: { port: 0 } }, /^outbound\.port: /],
  ];
  for (const [extra, want] of cases) {
    const p = problems(extra);
    assert.ok(p.some((x) => want.test(x)), `${JSON.stringify(extra).slice(0, 80)} → ${p.join(' | ') || 'accepted'}`);
  }
});
