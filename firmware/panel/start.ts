/*
 * panel/start.ts: builds moat-panel's front panel from the configuration:
 * the LED driver of panel.board (the Linux LED class under panel.ledsRoot, or
 * the simulator, which writes panel.json under panel.ledsRoot and renders its
 * line through `render`) and the LED loop (panel/front-panel.ts) talking to
 * moatd over control.socket. Must never write the configuration. Called by
 * moat-panel.ts.
 */
import { join } from 'node:path';
import type { Config } from '../config/schema.ts';
import { ControlClient } from '../control/client.ts';
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
