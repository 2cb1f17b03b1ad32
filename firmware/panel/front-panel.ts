/*
 * panel/front-panel.ts: moat-panel's LED loop. Runs the lamp test, then asks
 * moatd for `status` every pollMs over the control socket and shows its health
 * state on the LEDs (panel/patterns.ts); flashes ACTIVITY once per SMTP
 * transaction moatd counted since the last answer, at most ~10 a second.
 *
 * If moatd has not answered for faultAfterMs (killed, hung, socket gone) the
 * panel shows FAULT. A hold() pattern (the factory reset's confirm window)
 * wins over the health state until released. Must never change moatd's
 * configuration and never throw out of its timers: a driver error is reported
 * through warn. Built by moat-panel.ts; the button (panel/button.ts) reads
 * lastStatus for its short press.
 */
import type { ControlClient } from '../control/client.ts';
import type { Leds } from './leds.ts';
import { ACTIVITY_FLASH_MS, ACTIVITY_MIN_GAP_MS, pattern, type PanelState } from './patterns.ts';

export type FrontPanelOptions = {
  leds: Leds;
  /** A connection to moatd's control socket, failing within timeoutMs. */
  connect(timeoutMs: number): Promise<ControlClient>;
  pollMs: number;
  faultAfterMs: number;
  /** How long every LED is lit at the start (default 1 s). */
  lampTestMs?: number;
  warn?(msg: string): void;
};

export type MoatStatus = { state: 'booting' | 'ok' | 'degraded' | 'fault'; transactions: number; listen: string; hostname: string; reasons: Array<{ code: string; level: string; message: string }> };

export class FrontPanel {
  readonly #o: FrontPanelOptions;
  #client: ControlClient | null = null;
  #timer: NodeJS.Timeout | null = null;
  #flashTimer: NodeJS.Timeout | null = null;
  #closed = false;
  #startedAt = Date.now();
  #lastAnswer: number | null = null;
  #transactions: number | null = null;
  #pendingFlashes = 0;
  #hold: PanelState | null = null;
  #lastWarning = '';
  /** What the LEDs show now. */
  state: PanelState = 'lamp-test';
  /** moatd's last answer to `status`, if any. */
  lastStatus: MoatStatus | null = null;
  /** ACTIVITY flashes shown since the start. */
  flashes = 0;

  constructor(o: FrontPanelOptions) {
    this.#o = { ...o, warn: (m) => this.#warn(o, m) };
  }

  /** A driver that keeps failing is reported once, not at every poll. */
  #warn(o: FrontPanelOptions, m: string): void {
    if (m === this.#lastWarning) return;
    this.#lastWarning = m;
    o.warn?.(m);
  }

  async start(): Promise<void> {
    await this.#show('lamp-test');
    await this.#o.leds.set('activity', { mode: 'on' }).catch((e: Error) => this.#o.warn?.(e.message));
    await new Promise((r) => setTimeout(r, this.#o.lampTestMs ?? 1000));
    await this.#o.leds.set('activity', { mode: 'off' }).catch((e: Error) => this.#o.warn?.(e.message));
    this.#startedAt = Date.now();
    await this.#show('booting');
    this.#loop();
  }

  /** Shows `p` whatever the health, until release(). */
  async hold(p: PanelState): Promise<void> {
    this.#hold = p;
    await this.#show(p);
  }

  async release(): Promise<void> {
    this.#hold = null;
    await this.#show(this.#healthState());
  }

  async #show(s: PanelState): Promise<void> {
    this.state = s;
    const p = pattern(s);
    try {
      await this.#o.leds.set('status', p.status);
      await this.#o.leds.set('fault', p.fault);
    } catch (e) {
      this.#o.warn?.((e as Error).message);
    }
  }

  #healthState(): PanelState {
    const since = this.#lastAnswer ?? this.#startedAt;
    if (Date.now() - since >= this.#o.faultAfterMs) return 'unreachable';
    return this.lastStatus?.state ?? 'booting';
  }

  #loop(): void {
    if (this.#closed) return;
    void this.#poll().finally(() => {
      if (!this.#closed) this.#timer = setTimeout(() => this.#loop(), this.#o.pollMs);
    });
  }

  async #poll(): Promise<void> {
    try {
      this.#client ??= await this.#o.connect(this.#o.faultAfterMs);
      const s = await this.#client.request<MoatStatus>('status');
      this.#lastAnswer = Date.now();
      this.lastStatus = s;
      if (this.#transactions !== null && s.transactions > this.#transactions) this.#activity(s.transactions - this.#transactions);
      this.#transactions = s.transactions;
    } catch {
      this.#client?.close();
      this.#client = null;
    }
    if (!this.#hold && !this.#closed) await this.#show(this.#healthState());
  }

  /** Queues n flashes, spread ACTIVITY_MIN_GAP_MS apart; never more than a second's worth waits (a burst is not replayed for minutes). */
  #activity(n: number): void {
    this.#pendingFlashes = Math.min(this.#pendingFlashes + n, Math.floor(1000 / ACTIVITY_MIN_GAP_MS));
    if (this.#flashTimer) return;
    const next = () => {
      this.#flashTimer = null;
      if (this.#closed || this.#pendingFlashes === 0) return;
      this.#pendingFlashes--;
      this.flashes++;
      void this.#o.leds.flash('activity', ACTIVITY_FLASH_MS).catch((e: Error) => this.#o.warn?.(e.message));
      this.#flashTimer = setTimeout(next, ACTIVITY_MIN_GAP_MS);
    };
    next();
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#flashTimer) clearTimeout(this.#flashTimer);
    this.#client?.close();
    await this.#o.leds.close();
  }
}
