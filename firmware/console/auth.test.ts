import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hashPassword, verifyPassword, passwordProblem, Lockout, LOCK_AFTER } from './auth.ts';

test('a scrypt hash verifies its password only; no hash means the factory password', async () => {
  const h = await hashPassword('correct horse');
  assert.match(h, /^scrypt\$16384\$8\$1\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/);
  assert.equal(await verifyPassword('correct horse', h), true);
  assert.equal(await verifyPassword('correct hors', h), false);
  assert.notEqual(await hashPassword('correct horse'), h, 'salted');
  assert.equal(await verifyPassword('moat', undefined), true);
  assert.equal(await verifyPassword('moat ', undefined), false);
  assert.equal(await verifyPassword('moat', h), false);
});

test('hashes with absurd parameters or a broken shape are refused, not computed', async () => {
  const [, , , , salt, key] = (await hashPassword('x'.repeat(8))).split('$');
  for (const bad of [`scrypt$1073741824$8$1$${salt}$${key}`, `scrypt$16383$8$1$${salt}$${key}`, `scrypt$16384$64$1$${salt}$${key}`, `scrypt$16384$8$1$${salt}$QQ==`, 'plain', '']) {
    assert.equal(await verifyPassword('x'.repeat(8), bad), false, bad);
  }
  assert.equal(await verifyPassword('x'.repeat(1000), undefined), false);
});

test('new passwords: long enough, not too long, not the factory one', () => {
  assert.match(passwordProblem('short')!, /at least 8/);
  assert.match(passwordProblem('m'.repeat(200))!, /at most 128/);
  assert.equal(passwordProblem('long enough'), null);
});

test('lockout: a growing delay per failure, then a lock that doubles with each further failure', () => {
  let now = 1_000_000;
  const l = new Lockout({ failDelayMs: 1000, lockMs: 60_000, maxLockMs: 200_000 }, () => now);
  const delays = [];
  for (let i = 1; i < LOCK_AFTER; i++) delays.push(l.fail());
  assert.deepEqual(delays, [1000, 2000, 3000, 4000]);
  assert.equal(l.lockedFor(), 0);
  l.fail();
  assert.equal(l.lockedFor(), 60_000);
  now += 60_000;
  assert.equal(l.lockedFor(), 0);
  l.fail();
  assert.equal(l.lockedFor(), 120_000);
  now += 120_000;
  l.fail();
  assert.equal(l.lockedFor(), 200_000, 'capped');
  l.succeed();
  assert.equal(l.lockedFor(), 0);
  assert.equal(l.fail(), 1000);
});
