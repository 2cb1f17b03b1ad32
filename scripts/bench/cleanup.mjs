// Cleanup registry for the relay benchmark.
//
// Every resource the benchmark creates (child process, Postfix instance, loop
// mount, temp dir) registers an async `release` here and a synchronous
// `releaseSync` fallback. Normal code releases resources in order; on Ctrl-C,
// SIGTERM, SIGHUP or an uncaught error everything still registered is released
// last-in first-out, each step bounded in time. If the process exits without
// that having run (process.exit elsewhere), the synchronous fallbacks run from
// the 'exit' handler: kill process groups, lazy-unmount, remove dirs.

const resources = []; // { id, name, release, releaseSync, promise }
let nextId = 1;
let shuttingDown = false;

/**
 * @param {string} name
 * @param {() => Promise<void>} release
 * @param {() => void} [releaseSync]
 * @returns {{ done: () => Promise<void>, forget: () => void }}
 */
export function register(name, release, releaseSync) {
  const r = { id: nextId++, name, release, releaseSync, promise: null };
  resources.push(r);
  return {
    /** Release now (normal path); the same promise if a release is already under way. */
    done: () => start(r),
    /** Unregister without releasing (the resource is already gone). */
    forget() {
      r.promise ??= Promise.resolve();
      forget(r.id);
    },
  };
}

function start(r, ms = 60_000) {
  if (!r.promise) {
    r.promise = bounded(r.release(), ms, `cleanup of ${r.name}`).finally(() => forget(r.id));
  }
  return r.promise;
}

function forget(id) {
  const i = resources.findIndex((x) => x.id === id);
  if (i >= 0) resources.splice(i, 1);
}

async function bounded(p, ms, what) {
  let t;
  const timeout = new Promise((resolve) => {
    t = setTimeout(() => {
      console.error(`bench: ${what} did not finish within ${ms / 1000}s, moving on`);
      resolve();
    }, ms);
  });
  try {
    await Promise.race([Promise.resolve(p).catch((e) => console.error(`bench: ${what} failed: ${e?.message ?? e}`)), timeout]);
  } finally {
    clearTimeout(t);
  }
}

export function isShuttingDown() {
  return shuttingDown;
}

/**
 * Release everything still registered, newest first, one at a time; waits for
 * releases that normal code already started (so a mount is never unmounted
 * while the relay that uses it is still stopping).
 */
let releasing = null;
export function releaseAll() {
  releasing ??= releaseLoop().finally(() => (releasing = null));
  return releasing;
}

async function releaseLoop() {
  while (resources.length) {
    const r = resources[resources.length - 1];
    const t = performance.now();
    await start(r, 30_000);
    forget(r.id);
    if (shuttingDown) console.error(`bench: released ${r.name} (${((performance.now() - t) / 1000).toFixed(1)}s)`);
  }
}

function releaseAllSync() {
  while (resources.length) {
    const r = resources.pop();
    try {
      r.releaseSync?.();
    } catch {
      /* best effort */
    }
  }
}

/** Install signal / error handlers. */
export function installHandlers() {
  const onSignal = (sig) => {
    if (shuttingDown) {
      console.error(`bench: ${sig} again, forcing synchronous cleanup`);
      releaseAllSync();
      process.exit(130);
    }
    shuttingDown = true;
    console.error(`\nbench: ${sig} received, cleaning up (${resources.length} resources)…`);
    releaseAll().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  };
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => onSignal(sig));
  process.on('uncaughtException', (e) => {
    console.error('bench: uncaught exception:', e);
    if (shuttingDown) return;
    shuttingDown = true;
    releaseAll().finally(() => process.exit(1));
  });
  process.on('unhandledRejection', (e) => {
    console.error('bench: unhandled rejection:', e);
    if (shuttingDown) return;
    shuttingDown = true;
    releaseAll().finally(() => process.exit(1));
  });
  process.on('exit', () => {
    if (resources.length) releaseAllSync();
  });
}
