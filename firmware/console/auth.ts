/*
 * console/auth.ts: the console's password check and its lockout.
 *
 * Passwords are stored as `scrypt$N$r$p$SALT$HASH` (base64) in admin.passwordHash;
 * without a hash the factory password `moat` applies (and must be changed at the
 * first login). Verification compares in constant time and refuses stored
 * parameters outside sane bounds (a hand-edited N of 2^30 must not hang the
 * console). Lockout: each failure delays the next prompt a little longer; after
 * LOCK_AFTER failures in a row the login is locked, for a time that doubles with
 * every further failure. Must never log or echo a password or a hash. Called
 * by console/session.ts.
 */
import { randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';

export const FACTORY_PASSWORD = 'moat';
export const LOCK_AFTER = 5;
export const MIN_PASSWORD = 8;
export const MAX_PASSWORD = 128;

function scrypt(pw: string, salt: Buffer, len: number, o: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => scryptCb(pw, salt, len, o, (e, k) => (e ? reject(e) : resolve(k))));
}

export async function hashPassword(pw: string): Promise<string> {
  const N = 16384, r = 8, p = 1;
  const salt = randomBytes(16);
  const key = await scrypt(pw, salt, 32, { N, r, p, maxmem: 64 * 1024 * 1024 });
  return `scrypt$${N}$${r}$${p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

/** True when `pw` matches `stored` (or, with no stored hash, the factory password). */
export async function verifyPassword(pw: string, stored: string | undefined): Promise<boolean> {
  if (pw.length > MAX_PASSWORD) return false;
  if (stored === undefined) return timingSafeEqual(Buffer.from(pw.padEnd(MAX_PASSWORD, '\0')), Buffer.from(FACTORY_PASSWORD.padEnd(MAX_PASSWORD, '\0')));
  const m = /^scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/.exec(stored);
  if (!m) return false;
  const [N, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (N < 1024 || N > 1 << 20 || (N & (N - 1)) !== 0 || r < 1 || r > 32 || p < 1 || p > 4) return false;
  const want = Buffer.from(m[5]!, 'base64');
  if (want.length < 16 || want.length > 64) return false;
  const got = await scrypt(pw, Buffer.from(m[4]!, 'base64'), want.length, { N, r, p, maxmem: 256 * 1024 * 1024 });
  return timingSafeEqual(got, want);
}

/** A new password's problem, or null when it is acceptable. */
export function passwordProblem(pw: string): string | null {
  if (pw.length < MIN_PASSWORD) return `at least ${MIN_PASSWORD} characters, please`;
  if (pw.length > MAX_PASSWORD) return `at most ${MAX_PASSWORD} characters, please`;
  if (pw === FACTORY_PASSWORD) return 'not the factory password';
  return null;
}

export type LockoutOptions = {
  /** Delay after the first failure; the n-th waits n times as long. */
  failDelayMs?: number;
  /** Lock time after LOCK_AFTER failures; doubles with each further failure, up to maxLockMs. */
  lockMs?: number;
  maxLockMs?: number;
};

export class Lockout {
  private failures = 0;
  private until = 0;
  private readonly o: Required<LockoutOptions>;
  private readonly now: () => number;

  constructor(o: LockoutOptions = {}, now: () => number = Date.now) {
    this.o = { failDelayMs: 1000, lockMs: 60_000, maxLockMs: 3_600_000, ...o };
    this.now = now;
  }

  /** Milliseconds the login stays locked (0: open). */
  lockedFor(): number {
    return Math.max(0, this.until - this.now());
  }

  get failureCount(): number {
    return this.failures;
  }

  /** Records a failure; returns how long to wait before the next prompt. */
  fail(): number {
    this.failures++;
    if (this.failures >= LOCK_AFTER) {
      const lock = Math.min(this.o.maxLockMs, this.o.lockMs * 2 ** (this.failures - LOCK_AFTER));
      this.until = this.now() + lock;
      return 0;
    }
    return this.o.failDelayMs * this.failures;
  }

  succeed(): void {
    this.failures = 0;
    this.until = 0;
  }
}
