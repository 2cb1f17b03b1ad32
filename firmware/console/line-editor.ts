/*
 * console/line-editor.ts: line editing on a serial terminal (VT100/ANSI).
 *
 * Takes the raw bytes the terminal sends and keeps one line: printable ASCII
 * is inserted at the cursor; Backspace (DEL or BS) and Delete remove; Left,
 * Right, Home, End, Ctrl-A, Ctrl-E move; Up and Down walk the history;
 * Ctrl-U clears the line; Ctrl-C abandons it; Tab asks for completion, `?`
 * for help; CR, LF or CRLF end it. In secret mode (passwords) nothing is
 * echoed and nothing enters the history.
 *
 * Must never hold more than maxLength characters (the rest of an overlong
 * line is dropped with one bell), never pass control bytes or bytes above
 * 0x7E into a line (line noise from a wrong baud rate is ignored), and never
 * let an escape sequence run on (it is dropped after 16 bytes).
 * Called by console/session.ts.
 */
export type EditorHooks = {
  write(s: string): void;
  line(text: string): void;
  interrupt(): void;
  /** Completion for the text before the cursor: what to insert, or choices to list. */
  complete(before: string): { insert: string; choices: string[] };
  /** Help for the text before the cursor (lines to show). */
  help(before: string): string[];
};

const BELL = '\x07';

export class LineEditor {
  private buf = '';
  private cur = 0;
  private esc: string | null = null;
  private lastCR = false;
  private overflowRang = false;
  private readonly history: string[] = [];
  private hpos = 0;
  private saved = '';
  prompt = '';
  secret = false;
  readonly maxLength: number;
  readonly maxHistory: number;
  private readonly h: EditorHooks;

  constructor(h: EditorHooks, o: { maxLength?: number; maxHistory?: number } = {}) {
    this.h = h;
    this.maxLength = o.maxLength ?? 1024;
    this.maxHistory = o.maxHistory ?? 100;
  }

  get text(): string {
    return this.buf;
  }

  /** Shows the prompt and a fresh, empty line. */
  start(prompt: string, secret = false): void {
    this.prompt = prompt;
    this.secret = secret;
    this.buf = '';
    this.cur = 0;
    this.hpos = this.history.length;
    this.overflowRang = false;
    this.h.write(prompt);
  }

  /** Redraws prompt and line (after help or a list of choices). */
  redraw(): void {
    this.h.write('\r\x1b[K' + this.prompt + (this.secret ? '' : this.buf + (this.cur < this.buf.length ? `\x1b[${this.buf.length - this.cur}D` : '')));
  }

  feed(data: Buffer): void {
    for (const b of data) this.byte(b);
  }

  private byte(b: number): void {
    if (this.esc !== null) return this.escape(b);
    const wasCR = this.lastCR;
    this.lastCR = b === 13;
    if (b === 10 && wasCR) return; // CRLF: the CR ended the line
    switch (b) {
      case 13:
      case 10:
        return this.submit();
      case 27:
        this.esc = '';
        return;
      case 3:
        this.h.write('^C\r\n');
        this.buf = '';
        this.cur = 0;
        return this.h.interrupt();
      case 21: // Ctrl-U
        if (this.cur === 0) return;
        this.buf = this.buf.slice(this.cur);
        this.cur = 0;
        return this.redraw();
      case 1:
        return this.moveTo(0);
      case 5:
        return this.moveTo(this.buf.length);
      case 8:
      case 127:
        return this.backspace();
      case 9:
        if (!this.secret) this.tab();
        return;
      case 63: // ?
        if (!this.secret) return this.help();
        return this.insert('?');
    }
    if (b >= 32 && b <= 126) this.insert(String.fromCharCode(b));
    // other control bytes and bytes above 0x7E: noise, ignored
  }

  private escape(b: number): void {
    const seq = (this.esc += String.fromCharCode(b));
    if (seq.length > 16) {
      this.esc = null;
      return;
    }
    if (seq === '[' || seq === 'O') return;
    if (seq.length === 1) {
      this.esc = null; // ESC followed by something else: drop both
      return;
    }
    if (b >= 0x40 && b <= 0x7e) {
      this.esc = null;
      switch (seq.slice(1)) {
        case 'A':
          return this.historyStep(-1);
        case 'B':
          return this.historyStep(1);
        case 'C':
          if (this.cur < this.buf.length) {
            this.cur++;
            if (!this.secret) this.h.write('\x1b[C');
          }
          return;
        case 'D':
          if (this.cur > 0) {
            this.cur--;
            if (!this.secret) this.h.write('\x1b[D');
          }
          return;
        case 'H':
        case '1~':
          return this.moveTo(0);
        case 'F':
        case '4~':
          return this.moveTo(this.buf.length);
        case '3~':
          if (this.cur < this.buf.length) {
            this.buf = this.buf.slice(0, this.cur) + this.buf.slice(this.cur + 1);
            this.redrawTail(0, 1);
          }
          return;
      }
    }
  }

  private insert(s: string): void {
    if (this.buf.length + s.length > this.maxLength) {
      if (!this.overflowRang) this.h.write(BELL);
      this.overflowRang = true;
      return;
    }
    const atEnd = this.cur === this.buf.length;
    this.buf = this.buf.slice(0, this.cur) + s + this.buf.slice(this.cur);
    this.cur += s.length;
    if (this.secret) return;
    if (atEnd) this.h.write(s);
    else this.redrawTail(s.length, 0);
  }

  /** Moves the cursor with cursor keys' own sequences (a few bytes, not a redraw). */
  private moveTo(pos: number): void {
    const d = pos - this.cur;
    this.cur = pos;
    if (d !== 0 && !this.secret) this.h.write(d < 0 ? `\x1b[${-d}D` : `\x1b[${d}C`);
  }

  /**
   * After an edit at the cursor: writes what was inserted (`inserted` characters
   * before the cursor) and the rest of the line, blanks `removed` characters at
   * its end, and puts the cursor back. Output stays proportional to the tail.
   */
  private redrawTail(inserted: number, removed: number): void {
    if (this.secret) return;
    const tail = this.buf.slice(this.cur);
    const back = tail.length + removed;
    this.h.write(this.buf.slice(this.cur - inserted, this.cur) + tail + ' '.repeat(removed) + (back ? `\x1b[${back}D` : ''));
  }

  private backspace(): void {
    if (this.cur === 0) return;
    const atEnd = this.cur === this.buf.length;
    this.buf = this.buf.slice(0, this.cur - 1) + this.buf.slice(this.cur);
    this.cur--;
    this.overflowRang = false;
    if (this.secret) return;
    if (atEnd) this.h.write('\b \b');
    else {
      this.h.write('\b');
      this.redrawTail(0, 1);
    }
  }

  private historyStep(d: number): void {
    if (this.secret || this.history.length === 0) return;
    const next = Math.min(this.history.length, Math.max(0, this.hpos + d));
    if (next === this.hpos) return;
    if (this.hpos === this.history.length) this.saved = this.buf;
    this.hpos = next;
    this.buf = next === this.history.length ? this.saved : this.history[next]!;
    this.cur = this.buf.length;
    this.redraw();
  }

  private submit(): void {
    const line = this.buf;
    this.h.write('\r\n');
    if (!this.secret && line.trim() !== '' && this.history.at(-1) !== line) {
      this.history.push(line);
      if (this.history.length > this.maxHistory) this.history.shift();
    }
    this.hpos = this.history.length;
    this.buf = '';
    this.cur = 0;
    this.h.line(line);
  }

  private tab(): void {
    const before = this.buf.slice(0, this.cur);
    const r = this.h.complete(before);
    if (r.insert) this.insert(r.insert);
    else if (r.choices.length > 1) {
      this.h.write('\r\n' + columns(r.choices) + '\r\n');
      this.redraw();
    } else this.h.write(BELL);
  }

  private help(): void {
    const lines = this.h.help(this.buf.slice(0, this.cur));
    this.h.write('?\r\n' + lines.join('\r\n') + '\r\n');
    this.redraw();
  }
}

function columns(words: string[]): string {
  const w = Math.max(...words.map((x) => x.length)) + 2;
  const per = Math.max(1, Math.floor(78 / w));
  const rows: string[] = [];
  for (let i = 0; i < words.length; i += per) rows.push(words.slice(i, i + per).map((x) => x.padEnd(w)).join('').trimEnd());
  return rows.join('\r\n');
}
