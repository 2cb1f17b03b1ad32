/*
 * panel/patterns.ts: what the LEDs show for each state of the appliance.
 *
 * STATUS (green): fast blink booting, steady ok, slow blink degraded, dark on
 * a fault. FAULT (red): steady on a fault, including moatd not answering.
 * During the lamp test every LED is on; during a factory reset's confirm
 * window FAULT blinks fast and STATUS is dark. Pure data: must never touch a
 * driver. Used by panel/front-panel.ts and documented in README.md.
 */
import type { LedSetting } from './leds.ts';

export type PanelState = 'booting' | 'ok' | 'degraded' | 'fault' | 'unreachable' | 'lamp-test' | 'reset-confirm';

export const FAST: LedSetting = { mode: 'blink', onMs: 100, offMs: 100 };
export const SLOW: LedSetting = { mode: 'blink', onMs: 1000, offMs: 1000 };
const ON: LedSetting = { mode: 'on' };
const OFF: LedSetting = { mode: 'off' };

/** The ACTIVITY LED's flash and the least time between two flashes (at most 10 a second). */
export const ACTIVITY_FLASH_MS = 30;
export const ACTIVITY_MIN_GAP_MS = 100;

export function pattern(state: PanelState): { status: LedSetting; fault: LedSetting } {
  switch (state) {
    case 'lamp-test':
      return { status: ON, fault: ON };
    case 'booting':
      return { status: FAST, fault: OFF };
    case 'ok':
      return { status: ON, fault: OFF };
    case 'degraded':
      return { status: SLOW, fault: OFF };
    case 'fault':
    case 'unreachable':
      return { status: OFF, fault: ON };
    case 'reset-confirm':
      return { status: OFF, fault: FAST };
  }
}
