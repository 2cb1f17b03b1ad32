/*
 * panel/start.ts: builds moat-panel's front panel from the configuration:
 * the LED driver of panel.board (the Linux LED class under panel.ledsRoot, or
 * the simulator, which writes panel.json under panel.ledsRoot and renders its
 * line through `render`) and the LED loop (panel/front-panel.ts) talking to
 * moatd over control.socket; and the button (panel/button.ts) with its
 * actions. Must never write the configuration (the factory reset goes through
 * moatd's control socket). Called by moat-panel.ts.
 */
import { join } from 'node:path';
import type { Config } from '../config/schema.ts';
import { ControlClient } from '../control/client.ts';
import { Button, ResetWindow } from './button.ts';
import { FrontPanel } from './front-panel.ts';
import { SysfsLeds, type Leds } from './leds.ts';
import { SimulatorLeds } from './simulator.ts';

export function ledsFor(config: Config, render?: (line: string) => void): Leds {
  const p = config.panel;
  if (p.board === 'simulator') return new SimulatorLeds({ file: join(p.ledsRoot, 'panel.json'), ...(render ? { render } : {}) });
  return new SysfsLeds(p.ledsRoot);
}

export async function startFrontPanel(config: Config, o: { render?: (line: string) => void; warn?: (msg: string) => void } = {}): Promise<FrontPanel> {
  const panel = new FrontPanel({
    leds: ledsFor(config, o.render),
    connect: (t) => ControlClient.connect(config.control.socket, t),
    pollMs: config.panel.pollMs,
    faultAfterMs: config.panel.faultAfterMs,
    ...(o.warn ? { warn: o.warn } : {}),
  });
  await panel.start();
  return panel;
}

export type ButtonSetup = {
  front: FrontPanel;
  /** A line for the serial console. */
  print(line: string): void;
  /** The appliance's own addresses, for the short press. */
  addresses(): string[];
  /** The confirm window of the factory reset (default 10 s) and the long press (default 10 s). */
  windowMs?: number;
  longPressMs?: number;
  warn?(msg: string): void;
};

/** The button on panel.buttonDevice with its actions; null when no device is set. */
export function startButton(config: Config, o: ButtonSetup): { button: Button; window: ResetWindow; close(): Promise<void> } | null {
  if (!config.panel.buttonDevice) return null;
  const window = new ResetWindow({
    windowMs: o.windowMs ?? 10_000,
    show: () => o.front.hold('reset-confirm'),
    end: () => o.front.release(),
    say: (l) => o.print(`button: ${l}`),
    reset: async () => {
      const c = await ControlClient.connect(config.control.socket, 5000);
      try {
        await c.request('system.factoryReset', { user: 'button' });
      } finally {
        c.close();
      }
    },
  });
  const status = () => {
    const s = o.front.lastStatus;
    const addr = o.addresses();
    o.print(`button: ${s ? `${s.hostname} ${s.state}` : 'moatd is not answering'}; address ${addr.length ? addr.join(', ') : '(none)'}${s ? `; smtp ${s.listen}` : ''}`);
    for (const r of s?.reasons ?? []) o.print(`button:   ${r.level} ${r.code}: ${r.message}`);
  };
  const button = new Button({
    device: config.panel.buttonDevice,
    ...(o.longPressMs !== undefined ? { longPressMs: o.longPressMs } : {}),
    ...(o.warn ? { warn: o.warn } : {}),
    short: () =>
      void window.press().then((taken) => {
        if (!taken) status();
      }),
    long: () =>
      void window.press().then(async (taken) => {
        if (!taken) await window.start();
      }),
  });
  return {
    button,
    window,
    async close() {
      window.close();
      await button.close();
    },
  };
}
