import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Destinations } from './destinations.ts';

function table(now = { t: 1000 }) {
  return { now, d: new Destinations<string>({ perDestination: 2, minMs: 100, factor: 3, maxMs: 500, now: () => now.t }) };
}

test('a destination takes perDestination transactions; the next waits in its line and is handed back when one ends', () => {
  const { d } = table();
  assert.deepEqual(d.admit(['a.example']), { kind: 'go' });
  d.start(['a.example']);
  d.start(['a.example']);
  assert.deepEqual(d.admit(['a.example']), { kind: 'full', destination: 'a.example' });
  assert.deepEqual(d.admit(['b.example']), { kind: 'go' }, 'another destination is not affected');
  assert.deepEqual(d.admit(['b.example', 'a.example']), { kind: 'full', destination: 'a.example' });
  d.wait('a.example', 'm1');
  d.wait('a.example', 'm2');
  assert.deepEqual(d.finish(['a.example'], []), ['m1'], 'one slot freed, one message handed back');
  assert.deepEqual(d.finish(['a.example'], []), ['m2']);
  assert.equal(d.size, 0, 'nothing kept for an idle destination');
});

test('an unreachable destination is closed on the back-off schedule; a reachable delivery opens it; reopen() opens all', () => {
  const { d, now } = table();
  d.start(['dead.example']);
  d.wait('dead.example', 'm1');
  d.wait('dead.example', 'm2');
  assert.deepEqual(d.finish(['dead.example'], ['dead.example']), ['m1', 'm2'], 'every waiting message is handed back (to wait in the deferred heap)');
  assert.deepEqual(d.admit(['dead.example']), { kind: 'down', until: 1100 });
  assert.deepEqual(d.admit(['live.example', 'dead.example']), { kind: 'down', until: 1100 });
  now.t = 1100;
  assert.deepEqual(d.admit(['dead.example']), { kind: 'go' });
  d.start(['dead.example']);
  d.finish(['dead.example'], ['dead.example']);
  assert.equal(d.downUntil('dead.example'), 1100 + 300, 'the second failure in a row waits factor times longer');
  now.t = 1400;
  d.start(['dead.example']);
  d.finish(['dead.example'], ['dead.example']);
  assert.equal(d.downUntil('dead.example'), 1400 + 500, 'capped at maxMs');
  now.t = 1900;
  d.start(['dead.example']);
  d.finish(['dead.example'], []);
  assert.equal(d.downUntil('dead.example'), 0);
  d.start(['x.example']);
  d.finish(['x.example'], ['x.example']);
  d.wait('x.example', 'm3');
  assert.deepEqual(d.reopen(), ['m3']);
  assert.deepEqual(d.admit(['x.example']), { kind: 'go' });
});

test('forget() drops a message from every line', () => {
  const { d } = table();
  d.start(['a.example']);
  d.start(['a.example']);
  d.wait('a.example', 'm1');
  d.wait('a.example', 'm2');
  d.forget((m) => m === 'm1');
  assert.deepEqual(d.finish(['a.example'], []), ['m2']);
});
