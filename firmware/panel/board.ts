/*
 * panel/board.ts: board profiles (board/profiles/NAME.json: LED pins, button
 * pin, UART device, the board's device-tree files) and the device-tree nodes
 * the image adds to those files for them (a gpio-leds node with one LED per
 * moat LED, labelled with its name, and a gpio-keys node for the button with
 * its pull set through the pin controller), so that the kernel makes
 * /sys/class/leds/moat:*:* and the button's input device. They go into the
 * board's DTB itself, not into an overlay: Debian's raspi-firmware ships no
 * overlay files and Debian's DTBs carry no __symbols__ an overlay could use.
 *
 * A profile is plain data, checked here; must never touch hardware or write
 * a file itself. Called by scripts/patch-dtbs.ts (the image) and tests.
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
    /** The board's device-tree files in the boot partition that get the LED and button nodes. */
    deviceTrees: z.array(z.string().regex(/^[a-z0-9-]+\.dtb$/)).max(20).default([]),
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

/** The GPIO controller of the BCM2835-family SoCs (Pi 3, Pi 4, CM4), by path: the DTBs have no labels to refer to. */
export const GPIO_CONTROLLER = '/soc/gpio@7e200000';

/**
 * Device-tree source to append to a board's decompiled DTB: the pull of the
 * button's pin, a gpio-leds node (LEDs in the order status, fault, activity,
 * off until moat-panel sets them) and a gpio-keys node; empty for a profile
 * without LEDs or button.
 */
export function deviceTreeSource(p: BoardProfile): string {
  const leds = ledNames.flatMap((name) => (p.leds[name] ? [{ name, ...p.leds[name]! }] : []));
  if (!leds.length && !p.button) return '';
  const ctl = `&{${GPIO_CONTROLLER}}`;
  const out: string[] = [`/* moat front panel: ${p.model} (board/profiles/${p.name}.json) */`];
  const b = p.button;
  if (b) {
    const pull = { off: 0, down: 1, up: 2 }[b.pull];
    out.push(`${ctl} {`, '\tmoat_button_pins: moat-button-pins {', `\t\tbrcm,pins = <${b.gpio}>;`, '\t\tbrcm,function = <0>;', `\t\tbrcm,pull = <${pull}>;`, '\t};', '};');
  }
  out.push('/ {');
  if (leds.length) {
    out.push('\tmoat-leds {', '\t\tcompatible = "gpio-leds";');
    leds.forEach((l, i) =>
      out.push(`\t\tled-${i} {`, `\t\t\tlabel = "${l.name}";`, `\t\t\tgpios = <${ctl} ${l.gpio} ${l.activeLow ? 1 : 0}>;`, '\t\t\tlinux,default-trigger = "none";', '\t\t\tdefault-state = "off";', '\t\t};'),
    );
    out.push('\t};');
  }
  if (b) {
    out.push('\tmoat-button {', '\t\tcompatible = "gpio-keys";', '\t\tpinctrl-names = "default";', '\t\tpinctrl-0 = <&moat_button_pins>;');
    out.push('\t\tbutton-0 {', '\t\t\tlabel = "moat-button";', `\t\t\tgpios = <${ctl} ${b.gpio} ${b.activeLow ? 1 : 0}>;`, `\t\t\tlinux,code = <${b.keycode}>;`, '\t\t};', '\t};');
  }
  out.push('};');
  return out.join('\n') + '\n';
}
