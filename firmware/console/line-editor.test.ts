import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LineEditor } from './line-editor.ts';

function editor(o: { maxLength?: number } = {}) {
  const lines: string[] = [];
  let out = '';
  let interrupts = 0;
  const e = new LineEditor(
    {
      write: (s) => (out += s),
      line: (t) => lines.push(t),
      interrupt: () => interrupts++,
      complete: (before) => (before === 'sh' ? { insert: 'ow ', choices: ['show'] } : { insert: '', choices: ['alpha', 'beta'] }),
      help: (before) => [`help for ${JSON.stringify(before)}`],
    },
    o,
  );
  e.start('> ');
  return { e, lines, out: () => out, interrupts: () => interrupts, type: (s: string) => e.feed(Buffer.from(s, 'latin1')) };
}

test('printable text, CR, LF and CRLF each end one line', () => {
  const x = editor();
  x.type('one\rtwo\nthree\r\nfour\r');
  assert.deepEqual(x.lines, ['one', 'two', 'three', 'four']);
});

test('backspace (DEL and BS), Ctrl-U, cursor movement and Delete edit in place', () => {
  const x = editor();
  x.type('abcd\x7f\x08x\r');
  x.type('hello world\x15bye\r');
  x.type('ac\x1b[Db\r'); // left arrow, insert
  x.type('abc\x01X\x05Y\r'); // Ctrl-A, Ctrl-E
  x.type('abc\x1b[D\x1b[D\x1b[3~\r'); // Delete under the cursor
  x.type('abc\x1b[H\x1b[C\x15\r'); // Home, Right, Ctrl-U keeps what is after the cursor
  assert.deepEqual(x.lines, ['abx', 'bye', 'abc', 'XabcY', 'ac', 'bc']);
});

test('up and down walk the history; the line being typed comes back', () => {
  const x = editor();
  x.type('first\rsecond\r');
  x.type('dra\x1b[A\x1b[A\r');
  assert.equal(x.lines.at(-1), 'first');
  x.type('typing\x1b[A\x1b[B\r');
  assert.equal(x.lines.at(-1), 'typing');
  x.type('\x1bOA\r'); // application-mode arrow
  assert.equal(x.lines.at(-1), 'typing');
});

test('Ctrl-C abandons the line; Tab completes; ? asks for help without entering the line', () => {
  const x = editor();
  x.type('half a comm\x03');
  assert.equal(x.interrupts(), 1);
  assert.equal(x.e.text, '');
  x.type('sh\t');
  assert.equal(x.e.text, 'show ');
  x.type('?');
  assert.match(x.out(), /help for "show "/);
  assert.equal(x.e.text, 'show ');
  x.type('\x15zz\t');
  assert.match(x.out(), /alpha\s+beta/);
});

test('an overlong line is cut at maxLength with one bell; noise bytes never enter a line', () => {
  const x = editor({ maxLength: 16 });
  x.type('y'.repeat(100_000) + '\r');
  assert.deepEqual(x.lines, ['y'.repeat(16)]);
  assert.equal(x.out().split('\x07').length - 1, 1, 'one bell');
  const noise = Buffer.alloc(256);
  for (let i = 0; i < 256; i++) noise[i] = i;
  x.e.feed(Buffer.from([0x15]));
  x.e.feed(Buffer.from(noise.filter((b) => b !== 13 && b !== 10 && b !== 3 && b !== 0x1b && b !== 9 && b !== 63 && b !== 21 && b !== 1 && b !== 5 && b !== 8 && b !== 127)));
  x.type('\r');
  for (const ch of x.lines.at(-1)!) assert.ok(ch >= ' ' && ch <= '~', `only printable ASCII: ${JSON.stringify(ch)}`);
  // an escape sequence that never ends is dropped after 16 bytes
  const y = editor();
  y.type('\x1b[' + '1'.repeat(40) + 'ok\r');
  assert.equal(y.lines.at(-1), '1'.repeat(40 - 16) + 'ok');
});

test('secret mode echoes nothing and keeps no history', () => {
  const x = editor();
  x.e.start('Password: ', true);
  const before = x.out();
  x.type('hunter22?\r');
  assert.equal(x.lines.at(-1), 'hunter22?');
  assert.equal(x.out().slice(before.length), '\r\n');
  x.e.start('> ');
  x.type('\x1b[A\r');
  assert.equal(x.lines.at(-1), '', 'the password is not in the history');
});

test('edits in the middle rewrite only the tail; Home and End move with cursor sequences', () => {
  const x = editor();
  x.type('0123456789');
  let before = x.out().length;
  x.type('\x01'); // Ctrl-A
  assert.equal(x.out().slice(before), '\x1b[10D');
  x.type('\x1b[C\x1b[C\x1b[C\x1b[C\x1b[C'); // to the middle
  before = x.out().length;
  x.type('X');
  assert.equal(x.out().slice(before), 'X56789\x1b[5D');
  before = x.out().length;
  x.type('\x7f');
  assert.equal(x.out().slice(before), '\b56789 \x1b[6D');
  before = x.out().length;
  x.type('\x05'); // Ctrl-E
  assert.equal(x.out().slice(before), '\x1b[5C');
  x.type('\r');
  assert.equal(x.lines.at(-1), '0123456789');
});
