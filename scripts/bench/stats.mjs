// Medians over benchmark rounds, shared by bench-relay.mjs and bench-compare.mjs.

/** The median of the finite numbers in xs, or null when there are none. */
export function median(xs) {
  const v = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return null;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

/** x rounded to d decimals; null and undefined stay null. */
export function round(x, d) {
  if (x === null || x === undefined) return null;
  const f = 10 ** d;
  return Math.round(x * f) / f;
}

/**
 * Rows grouped by keyOf(row), in first-seen order; build(group, okRows, med) makes the
 * summary row of each group, med(field, decimals) being the median of that field over
 * the rows that finished ok.
 */
export function summariseRounds(rows, keyOf, build) {
  const groups = new Map();
  for (const r of rows) {
    const k = keyOf(r);
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k).push(r);
  }
  return [...groups.values()].map((g) => {
    const ok = g.filter((r) => r.status === 'ok');
    return build(g, ok, (f, d) => round(median(ok.map((r) => r[f])), d));
  });
}
