import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolve, complete, help, completePath, UsageError, type CommandContext, type Mode } from './commands.ts';

const ctx = (mode: Mode, queueIds: string[] = []): CommandContext => ({
  mode,
  setMode: () => undefined,
  user: 'admin',
  ctl: () => Promise.reject(new Error('no moatd in this test')),
  out: async () => undefined,
  confirm: async () => false,
  logout: () => undefined,
  reboot: async () => undefined,
  queueIds,
});

test('words resolve by unique prefix; ambiguous, unknown and incomplete commands are named', () => {
  assert.equal(resolve('operational', ['sh', 'st']).node.word, 'status');
  assert.deepEqual(resolve('operational', ['show', 'log', '20']).args, ['20']);
  assert.equal(resolve('configure', ['c', 'confirmed', '5']).node.word, 'commit');
  assert.deepEqual(resolve('operational', ['show', 'q', 'x']).args, ['x'], 'arguments are left for the command to judge');
  assert.throws(() => resolve('configure', ['s']), /"s" is ambiguous: set, show/);
  assert.throws(() => resolve('operational', ['s']), /incomplete command/, 'a unique prefix is the command');
  assert.throws(() => resolve('operational', ['frobnicate']), /unknown command "frobnicate"/);
  assert.throws(() => resolve('operational', ['queue']), /incomplete command/);
  assert.throws(() => resolve('operational', []), (e: Error) => e instanceof UsageError && /type \? for help/.test(e.message));
});

test('completion: commands, setting paths (objects end in a dot), values and queue ids', () => {
  assert.deepEqual(complete(ctx('operational'), 'sh'), { insert: 'ow ', choices: ['show'] });
  assert.deepEqual(complete(ctx('operational'), 'show q'), { insert: 'ueue ', choices: ['queue'] });
  assert.equal(complete(ctx('operational'), 'show ').choices.length, 6);
  assert.deepEqual(complete(ctx('configure'), 'set inb'), { insert: 'ound.', choices: ['inbound.'] });
  assert.deepEqual(complete(ctx('configure'), 'set inbound.recipients.mode '), { insert: '', choices: ['any', 'list', 'verify'] });
  assert.deepEqual(complete(ctx('configure'), 'set inbound.recipients.mode v'), { insert: 'erify ', choices: ['verify'] });
  assert.deepEqual(complete(ctx('configure'), 'set internal.servers.t'), { insert: 'ls ', choices: ['internal.servers.tls'] });
  assert.deepEqual(complete(ctx('operational', ['01A2', '01B3']), 'queue hold 01A'), { insert: '2 ', choices: ['01A2'] });
  assert.deepEqual(complete(ctx('operational'), 'nonsense '), { insert: '', choices: [] });
  assert.ok(completePath('n').includes('network.'));
  assert.deepEqual(completePath('nope.x'), []);
});

test('help lists what can follow, with a word of explanation', () => {
  const top = help(ctx('operational'), '');
  assert.ok(top.some((l) => /^\s+show\s+show the state of moat$/.test(l)));
  assert.ok(help(ctx('configure'), 'set inbound.max').some((l) => /inbound\.maxMessageSize\s+a number/.test(l)));
  assert.ok(help(ctx('configure'), 'set inbound.recipients.mode ').some((l) => /one of: any list verify/.test(l)));
  assert.ok(help(ctx('operational'), 'dig mx ').some((l) => /<DOMAIN>/.test(l)));
});
