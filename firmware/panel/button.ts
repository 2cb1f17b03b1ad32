/*
 * panel/button.ts: the front-panel button, read from its gpio-key input
 * device (/dev/input/event*, panel.buttonDevice) as 24-byte input_event
 * records (64-bit: struct timeval as two int64, u16 type, u16 code, s32
 * value; EV_KEY = 1, value 1 pressed, 0 released, 2 auto-repeat).
 *
 * A press is timed by the kernel's own event timestamps; a hold reaching
 * LONG_PRESS_MS also counts as long while the button is still down (a timer).
 * Short press: status and the appliance's address on the console. Long press:
 * a factory reset after a confirm window shown on the LEDs (FAULT blinks
 * fast); a second press in the window cancels. Must never act on anything but
 * whole EV_KEY records, never reset without the window having passed, and
 * never block on the device. Built by moat-panel.ts.
 */
import { createReadStream, type ReadStream } from 'node:fs';

export const RECORD_BYTES = 24;
export const EV_KEY = 1;
export const LONG_PRESS_MS = 10_000;

export type InputEvent = { timeMs: number; type: number; code: number; value: number };

/** Splits a byte stream into input_event records, keeping a partial record across chunks. */
export class InputEventParser {
  #carry: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): InputEvent[] {
    const buf = this.#carry.length ? Buffer.concat([this.#carry, chunk]) : chunk;
    const out: InputEvent[] = [];
    let off = 0;
    for (; off + RECORD_BYTES <= buf.length; off += RECORD_BYTES) {
      const sec = buf.readBigInt64LE(off);
      const usec = buf.readBigInt64LE(off + 8);
      out.push({ timeMs: Number(sec) * 1000 + Math.floor(Number(usec) / 1000), type: buf.readUInt16LE(off + 16), code: buf.readUInt16LE(off + 18), value: buf.readInt32LE(off + 20) });
    }
    this.#carry = Buffer.from(buf.subarray(off));
    return out;
  }
}

/** One input_event record (for tests and the simulator's key presses). */
export function inputEvent(timeMs: number, type: number, code: number, value: number): Buffer {
  const b = Buffer.alloc(RECORD_BYTES);
  b.writeBigInt64LE(BigInt(Math.floor(timeMs / 1000)), 0);
  b.writeBigInt64LE(BigInt((timeMs % 1000) * 1000), 8);
  b.writeUInt16LE(type, 16);
  b.writeUInt16LE(code, 18);
  b.writeInt32LE(value, 20);
  return b;
}

export type ButtonOptions = {
  /** The input device or a FIFO standing in for it. */
  device: string;
  short(): void;
  long(): void;
  longPressMs?: number;
  warn?(msg: string): void;
};

/** Watches the device; calls short() or long() once per press. */
export class Button {
  readonly #o: ButtonOptions;
  readonly #stream: ReadStream;
  readonly #parser = new InputEventParser();
  #downAt: number | null = null;
  #longFired = false;
  #timer: NodeJS.Timeout | null = null;
  readonly closed: Promise<void>;

  constructor(o: ButtonOptions) {
    this.#o = o;
    this.#stream = createReadStream(o.device, { highWaterMark: RECORD_BYTES * 64 });
    this.#stream.on('data', (c) => this.#events(this.#parser.push(c as Buffer)));
    this.#stream.on('error', (e: NodeJS.ErrnoException) => o.warn?.(`button ${o.device}: ${e.code ?? e.message}`));
    this.closed = new Promise((r) => this.#stream.once('close', () => r()));
  }

  #events(events: InputEvent[]): void {
    const long = this.#o.longPressMs ?? LONG_PRESS_MS;
    for (const e of events) {
      if (e.type !== EV_KEY) continue;
      if (e.value === 1 && this.#downAt === null) {
        this.#downAt = e.timeMs;
        this.#longFired = false;
        this.#timer = setTimeout(() => {
          this.#longFired = true;
          this.#o.long();
        }, long);
      } else if (e.value === 0 && this.#downAt !== null) {
        if (this.#timer) clearTimeout(this.#timer);
        const held = e.timeMs - this.#downAt;
        this.#downAt = null;
        if (this.#longFired) continue;
        if (held >= long) this.#o.long();
        else this.#o.short();
      }
    }
  }

  close(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    this.#stream.destroy();
    return this.closed;
  }
}

export type ResetWindowOptions = {
  /** Shows the confirm window on the LEDs, and ends it. */
  show(): Promise<void>;
  end(): Promise<void>;
  /** Runs the factory reset (system.factoryReset over the control socket). */
  reset(): Promise<void>;
  /** Tells the console what happens. */
  say(line: string): void;
  windowMs: number;
};

/**
 * The factory reset's confirm window: start() opens it; press() inside it
 * cancels; when it passes untouched the reset runs. Returns whether a press
 * was taken by the window (so it is not also a status press).
 */
export class ResetWindow {
  readonly #o: ResetWindowOptions;
  #timer: NodeJS.Timeout | null = null;

  constructor(o: ResetWindowOptions) {
    this.#o = o;
  }

  get open(): boolean {
    return this.#timer !== null;
  }

  async start(): Promise<void> {
    if (this.#timer) return;
    this.#o.say(`factory reset in ${this.#o.windowMs / 1000} s: press the button again to cancel`);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      void (async () => {
        try {
          await this.#o.reset();
          this.#o.say('factory reset done: the factory configuration is running');
        } catch (e) {
          this.#o.say(`factory reset failed: ${(e as Error).message}`);
        } finally {
          await this.#o.end();
        }
      })();
    }, this.#o.windowMs);
    await this.#o.show();
  }

  async press(): Promise<boolean> {
    if (!this.#timer) return false;
    clearTimeout(this.#timer);
    this.#timer = null;
    this.#o.say('factory reset cancelled');
    await this.#o.end();
    return true;
  }

  close(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }
}
