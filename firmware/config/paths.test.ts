import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseSettingPath, formatSettingPath, settingAt, setAt, deleteAt, getAt, valueFromWords, PathError } from './paths.ts';

test('setting paths parse into names and indexes, and bad ones are refused', () => {
  assert.deepEqual(parseSettingPath('internal.servers[0].port'), ['internal', 'servers', 0, 'port']);
  assert.equal(formatSettingPath(['internal', 'servers', 0, 'port']), 'internal.servers[0].port');
  assert.deepEqual(parseSettingPath(''), []);
  for (const bad of ['a..b', '.a', 'a.', 'a[x]', '[0]', 'a b', '__proto__', 'a.constructor[', 'x'.repeat(201)]) assert.throws(() => parseSettingPath(bad), PathError, bad);
});

test('the schema tells what each path holds; unknown settings are named', () => {
  assert.equal(settingAt(['inbound', 'localDomains']).kind, 'array');
  assert.equal(settingAt(['inbound', 'maxMessageSize']).kind, 'number');
  assert.deepEqual((settingAt(['inbound', 'recipients', 'mode']) as { options: string[] }).options, ['any', 'list', 'verify']);
  assert.equal(settingAt(['internal', 'servers', 0, 'host']).kind, 'string');
  assert.equal(settingAt(['inbound', 'listen']).kind, 'string');
  assert.equal(settingAt(['console', 'baudRate']).kind, 'number');
  assert.throws(() => settingAt(['inbound', 'nope']), /unknown setting inbound\.nope/);
  assert.throws(() => settingAt(['hostname', 0]), /hostname is not a list/);
  assert.throws(() => settingAt(['constructor']), /unknown setting constructor/);
});

test('set and delete return changed copies and leave the original alone', () => {
  const doc = { inbound: { localDomains: ['a.com'] }, internal: { servers: [{ host: 'x' }] } };
  const a = setAt(doc, ['inbound', 'maxRecipients'], 5);
  assert.equal(getAt(a, ['inbound', 'maxRecipients']), 5);
  assert.equal(getAt(doc, ['inbound', 'maxRecipients']), undefined);
  const b = setAt(doc, ['internal', 'servers', 1, 'host'], 'y');
  assert.deepEqual(getAt(b, ['internal', 'servers']), [{ host: 'x' }, { host: 'y' }]);
  assert.throws(() => setAt(doc, ['internal', 'servers', 5, 'host'], 'z'), /past the end/);
  const c = setAt(doc, ['network', 'dnsServers'], ['10.0.0.1']);
  assert.deepEqual(getAt(c, ['network']), { dnsServers: ['10.0.0.1'] });
  const d = deleteAt(b, ['internal', 'servers', 0]);
  assert.deepEqual(getAt(d, ['internal', 'servers']), [{ host: 'y' }]);
  assert.throws(() => deleteAt(doc, ['inbound', 'tls']), /inbound\.tls is not set/);
});

test('console words become typed values', () => {
  assert.deepEqual(valueFromWords(settingAt(['inbound', 'localDomains']), ['a.com', 'b.com'], 'p'), ['a.com', 'b.com']);
  assert.equal(valueFromWords(settingAt(['inbound', 'maxMessageSize']), ['1000'], 'p'), 1000);
  assert.equal(valueFromWords(settingAt(['admin', 'mustChangePassword']), ['false'], 'p'), false);
  assert.deepEqual(valueFromWords(settingAt(['internal', 'servers']), ['[{"host":"10.0.0.5"}]'], 'p'), [{ host: '10.0.0.5' }]);
  assert.throws(() => valueFromWords(settingAt(['inbound', 'maxMessageSize']), ['big'], 'inbound.maxMessageSize'), /inbound\.maxMessageSize: expected a number, got "big"/);
  assert.throws(() => valueFromWords(settingAt(['inbound', 'recipients', 'mode']), ['all'], 'm'), /expected one of any, list, verify/);
  assert.throws(() => valueFromWords(settingAt(['inbound']), ['x'], 'inbound'), /give this as JSON/);
  assert.throws(() => valueFromWords(settingAt(['inbound', 'maxMessageSize']), ['{bad'], 'p'), /not valid JSON/);
  assert.throws(() => valueFromWords(settingAt(['inbound', 'maxMessageSize']), [], 'p'), /give a value/);
});
