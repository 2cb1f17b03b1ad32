/*
 * panel/simulator.ts: the front panel without hardware. Implements the LED
 * interface (panel/leds.ts): keeps the settings, writes them as JSON to a
 * state file (written whole, then renamed) and renders the panel as one line
 * for the development console, e.g.
 *   [moat] STATUS ● steady   FAULT ○ off   ACTIVITY ○ off
 * Must never touch /sys or a device. Used by moat-panel.ts when panel.board is
 * "simulator", and by tests.
 */
import { rename, writeFile } from 'node:fs/promises';
import { LED_NAMES, same, type LedRole, type LedSetting, type Leds } from './leds.ts';

export type SimulatedPanel = Record<LedRole, LedSetting>;

const show = (s: LedSetting): string =>
  s.mode === 'on' ? '● steady' : s.mode === 'off' ? '○ off' : `◐ blink ${s.onMs}/${s.offMs} ms`;

export function renderPanel(p: SimulatedPanel): string {
  return `[moat] STATUS ${show(p.status)}   FAULT ${show(p.fault)}   ACTIVITY ${show(p.activity)}`;
}

export class SimulatorLeds implements Leds {
  readonly #file: string | null;
  readonly #render: ((line: string) => void) | null;
  readonly #timers = new Set<NodeJS.Timeout>();
  #writing: Promise<void> = Promise.resolve();
  readonly state: SimulatedPanel = { status: { mode: 'off' }, fault: { mode: 'off' }, activity: { mode: 'off' } };

  /** file: where the state goes (null: nowhere); render: gets the panel line after each change. */
  constructor(o: { file?: string; render?: (line: string) => void } = {}) {
    this.#file = o.file ?? null;
    this.#render = o.render ?? null;
  }

  #changed(): Promise<void> {
    this.#render?.(renderPanel(this.state));
    const file = this.#file;
    if (!file) return Promise.resolve();
    const doc = JSON.stringify(Object.fromEntries((Object.keys(LED_NAMES) as LedRole[]).map((r) => [LED_NAMES[r], this.state[r]]))) + '\n';
    this.#writing = this.#writing.then(async () => {
      await writeFile(file + '.tmp', doc);
      await rename(file + '.tmp', file);
    });
    return this.#writing;
  }

  async set(role: LedRole, s: LedSetting): Promise<void> {
    if (same(this.state[role], s)) return;
    this.state[role] = s;
    await this.#changed();
  }

  async flash(role: LedRole, ms: number): Promise<void> {
    this.state[role] = { mode: 'on' };
    await this.#changed();
    const t = setTimeout(() => {
      this.#timers.delete(t);
      this.state[role] = { mode: 'off' };
      void this.#changed().catch(() => undefined);
    }, ms);
    this.#timers.add(t);
  }

  async close(): Promise<void> {
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    await this.#writing.catch(() => undefined);
  }
}
