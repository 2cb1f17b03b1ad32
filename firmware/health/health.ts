/*
 * health/health.ts: the list of faults moatd knows about, for the control
 * socket's `status` (and, with the front-panel issue, the LEDs).
 *
 * A fault has a stable code, a human message and the time it was first seen;
 * raising a code again updates its message, clearing it removes it. Must never
 * hold secrets or message data in a message, and never decide anything itself:
 * the parts that notice a problem raise it. Called by daemon.ts (configuration
 * recovery, failed applies) and read by control/server.ts.
 */
export type Fault = { code: string; message: string; since: string };

export class Health {
  private readonly faults = new Map<string, Fault>();
  private readonly now: () => Date;

  constructor(now: () => Date = () => new Date()) {
    this.now = now;
  }

  raise(code: string, message: string): void {
    const old = this.faults.get(code);
    this.faults.set(code, { code, message, since: old?.since ?? this.now().toISOString() });
  }

  clear(code: string): void {
    this.faults.delete(code);
  }

  list(): Fault[] {
    return [...this.faults.values()].map((f) => ({ ...f }));
  }

  get state(): 'ok' | 'fault' {
    return this.faults.size ? 'fault' : 'ok';
  }
}
