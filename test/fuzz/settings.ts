// Shared settings of the fuzz tests: a fixed seed (reproducible) and a bounded number of runs
// in the test suite; `npm run fuzz` raises the runs through MOAT_FUZZ_SCALE and may set
// MOAT_FUZZ_SEED. A failing input found by fast-check is printed with its seed and path; keep it
// as a fixture under test/fixtures/fuzz/ (see regressions.test.ts), never only in a log.
// Called by the *.test.ts files in test/fuzz/.
import fc from 'fast-check';

const scale = Number(process.env.MOAT_FUZZ_SCALE ?? '1');
if (!Number.isFinite(scale) || scale <= 0) throw new Error(`MOAT_FUZZ_SCALE must be a positive number, got ${process.env.MOAT_FUZZ_SCALE}`);
const seed = Number(process.env.MOAT_FUZZ_SEED ?? '20261128');
if (!Number.isInteger(seed)) throw new Error(`MOAT_FUZZ_SEED must be an integer, got ${process.env.MOAT_FUZZ_SEED}`);

/** fast-check parameters for a target whose suite share is `runs` runs. */
export function fuzzParams<T>(runs: number): fc.Parameters<T> {
  return { seed, numRuns: Math.max(1, Math.round(runs * scale)), endOnFailure: true };
}
