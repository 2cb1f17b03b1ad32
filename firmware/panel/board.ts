/*
 * panel/board.ts: board profiles (board/profiles/NAME.json: LED pins, button
 * pin, UART device) and the device-tree overlay lines the image puts into
 * config.txt for them (dtoverlay=gpio-led per LED, labelled with the LED's
 * name, and dtoverlay=gpio-key for the button), so that the kernel makes
 * /sys/class/leds/moat:*:* and the button's input device.
 *
 * A profile is plain data, checked here; must never touch hardware or write
 * config.txt itself. Called by the image recipe and tests.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { LED_NAMES } from './leds.ts';

export const BOARDS = ['pi3', 'pi4', 'pi5', 'cm4', 'simulator'] as const;
export type BoardName = (typeof BOARDS)[number];

const gpio = z.number().int().min(2).max(27);
const ledNames = Object.values(LED_NAMES) as [string, ...string[]];

export const profileSchema = z
  .strictObject({
    name: z.enum(BOARDS),
    model: z.string().min(1).max(200),
    /** The serial console's device; empty on the simulator. */
    uart: z.string().regex(/^(\/dev\/[A-Za-z0-9]+)?$/),
    leds: z.partialRecord(z.enum(ledNames), z.strictObject({ gpio, activeLow: z.boolean() })),
    button: z.strictObject({ gpio, activeLow: z.boolean(), pull: z.enum(['up', 'down', 'off']), keycode: z.number().int().min(1).max(0x2ff) }).nullable(),
  })
  .superRefine((p, ctx) => {
    const pins = [...Object.values(p.leds).map((l) => l!.gpio), ...(p.button ? [p.button.gpio] : [])];
    if (new Set(pins).size !== pins.length) ctx.addIssue({ code: 'custom', message: 'a GPIO is used twice' });
    if (p.name !== 'simulator') {
      const missing = ledNames.filter((n) => !(n in p.leds));
      if (missing.length) ctx.addIssue({ code: 'custom', message: `missing LEDs: ${missing.join(', ')}` });
      if (!p.uart) ctx.addIssue({ code: 'custom', message: 'a board needs its UART' });
    }
  });

export type BoardProfile = z.output<typeof profileSchema>;

/** The board/profiles folder of the source tree. */
export const PROFILES_DIR = join(import.meta.dirname, '..', '..', 'board', 'profiles');

/** Reads and checks board/profiles/NAME.json; the error names the file and the problem. */
export function loadProfile(name: string, dir = PROFILES_DIR): BoardProfile {
  if (!(BOARDS as readonly string[]).includes(name)) throw new Error(`unknown board ${JSON.stringify(name)}: expected one of ${BOARDS.join(', ')}`);
  const file = join(dir, `${name}.json`);
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`board profile ${file}: ${(e as Error).message}`);
  }
  const r = profileSchema.safeParse(doc);
  if (!r.success) throw new Error(`board profile ${file}: ${r.error.issues.map((i) => `${i.path.join('.') || '(top level)'}: ${i.message}`).join('; ')}`);
  if (r.data.name !== name) throw new Error(`board profile ${file}: names board ${r.data.name}`);
  return r.data;
}

/** The config.txt lines for a profile, LEDs in the order status, fault, activity, then the button. */
export function overlayLines(p: BoardProfile): string[] {
  const out: string[] = [];
  for (const name of ledNames) {
    const l = p.leds[name];
    if (l) out.push(`dtoverlay=gpio-led,gpio=${l.gpio},label=${name},active_low=${l.activeLow ? 1 : 0},trigger=none`);
  }
  if (p.button) {
    const pull = { up: 2, down: 1, off: 0 }[p.button.pull];
    out.push(`dtoverlay=gpio-key,gpio=${p.button.gpio},active_low=${p.button.activeLow ? 1 : 0},gpio_pull=${pull},keycode=${p.button.keycode},label=moat-button`);
  }
  return out;
}
