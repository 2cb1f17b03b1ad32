/*
 * panel/leds.ts: the front panel's LEDs behind a small interface, and its
 * driver for the Linux LED class (/sys/class/leds/NAME/{trigger,brightness,
 * delay_on,delay_off}, made by dtoverlay=gpio-led).
 *
 * A steady LED is trigger "default-on", a dark one trigger "none" with
 * brightness 0, a blinking one trigger "timer" with delay_on/delay_off, so the
 * kernel blinks it without the CPU and keeps blinking if Node hangs. A setting
 * is written only when it changes (rewriting the timer restarts its phase).
 * Must never decide what to show (panel/patterns.ts does) and never touch a
 * path outside its root. Used by panel/front-panel.ts; the simulator
 * (panel/simulator.ts) implements the same interface.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export const LED_NAMES = { status: 'moat:green:status', fault: 'moat:red:fault', activity: 'moat:yellow:activity' } as const;
export type LedRole = keyof typeof LED_NAMES;

export type LedSetting = { mode: 'off' } | { mode: 'on' } | { mode: 'blink'; onMs: number; offMs: number };

export interface Leds {
  /** Shows a setting; resolves when the driver has taken it. */
  set(role: LedRole, s: LedSetting): Promise<void>;
  /** A short flash (the ACTIVITY LED): on now, off after ms. */
  flash(role: LedRole, ms: number): Promise<void>;
  close(): Promise<void>;
}

export const same = (a: LedSetting | undefined, b: LedSetting): boolean =>
  a !== undefined && a.mode === b.mode && (a.mode !== 'blink' || (b.mode === 'blink' && a.onMs === b.onMs && a.offMs === b.offMs));

export class LedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LedError';
  }
}

export class SysfsLeds implements Leds {
  readonly #root: string;
  readonly #shown = new Map<LedRole, LedSetting>();
  readonly #timers = new Set<NodeJS.Timeout>();

  constructor(root: string) {
    this.#root = root;
  }

  async #write(role: LedRole, file: 'trigger' | 'brightness' | 'delay_on' | 'delay_off', value: string): Promise<void> {
    const path = join(this.#root, LED_NAMES[role], file);
    try {
      // as `echo VALUE > FILE` does; a missing LED (no folder) is an error
      await writeFile(path, value + '\n');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
      throw new LedError(`LED ${LED_NAMES[role]}: cannot write ${file} under ${this.#root}: ${code}`);
    }
  }

  async set(role: LedRole, s: LedSetting): Promise<void> {
    if (same(this.#shown.get(role), s)) return;
    this.#shown.delete(role);
    if (s.mode === 'on') await this.#write(role, 'trigger', 'default-on');
    else if (s.mode === 'off') {
      await this.#write(role, 'trigger', 'none');
      await this.#write(role, 'brightness', '0');
    } else {
      // the timer trigger creates delay_on/delay_off; they are written after it
      await this.#write(role, 'trigger', 'timer');
      await this.#write(role, 'delay_on', String(s.onMs));
      await this.#write(role, 'delay_off', String(s.offMs));
    }
    this.#shown.set(role, s); // only once written: a failed write is tried again next time
  }

  async flash(role: LedRole, ms: number): Promise<void> {
    this.#shown.delete(role);
    await this.#write(role, 'trigger', 'none');
    await this.#write(role, 'brightness', '1');
    const t = setTimeout(() => {
      this.#timers.delete(t);
      if (!this.#shown.has(role)) void this.#write(role, 'brightness', '0').catch(() => undefined);
    }, ms);
    this.#timers.add(t);
  }

  async close(): Promise<void> {
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
  }
}
