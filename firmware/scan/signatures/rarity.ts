/*
 * scan/signatures/rarity.ts: how common a short byte sequence is in ordinary
 * mail, to pick the window of each signature that the matcher indexes.
 *
 * A skip-based matcher stops and verifies wherever the input contains the last
 * block of some indexed window, and shifts less where it contains any of their
 * blocks; so each signature is indexed by the window whose blocks are rarest
 * in traffic. The traffic model is a sample built once, deterministically, from
 * the things mail is made of: English text, base64 lines, header fields, HTML
 * and quoted-printable. Counts are kept per hashed block of 2 or 3 bytes,
 * with the bytes' own frequencies as a floor for blocks the sample lacks. In
 * text-like windows, one that joins two words (letters, a separator or two,
 * letters) scores far rarer: words recur, pairs of them much less. Measured
 * with 1 000 text signatures over English-like text, that cut the windows
 * found in the text (each a verification in vain) sevenfold.
 *
 * Must never: depend on the scanned data (the choice is made at compile time
 * only), or take more than a few milliseconds. Called by compile.ts.
 */

const WORDS = (
  'the of and to in is that for it as with was on be by this are from at or have an not but you which ' +
  'all they one we can were there their has more will would been if no when who what so about out up ' +
  'into them some could time these two may then do first any like other than only new its also over ' +
  'after see most made where through back much before good well should because each just those how ' +
  'mail message please find attached invoice order payment account meeting report thanks regards ' +
  'dear team your our here attached document review update information service customer support ' +
  'Monday Tuesday Friday January March September The We I Please Thanks Best Hello Hi Subject ' +
  'http https www com org net html email server data file click link today week year number'
).split(' ');

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

const SAMPLE_HEAD = [
  'Received: from mail.example.com (mail.example.com [192.0.2.1])\r\n\tby mx.example.org with ESMTPS id 4F2A1B;\r\n',
  'From: "Alice Example" <alice@example.com>\r\nTo: bob@example.org\r\nSubject: Re: quarterly report\r\n',
  'Date: Mon, 2 Mar 2026 10:15:00 +0100\r\nMessage-ID: <20260302101500.12345@example.com>\r\n',
  'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="----=_Part_12345_67890.1700000000000"\r\n',
  'Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n',
  'Content-Type: application/pdf; name="invoice.pdf"\r\nContent-Disposition: attachment; filename="invoice.pdf"\r\n',
  'Content-Transfer-Encoding: base64\r\n\r\n',
  '<html><head><meta charset="utf-8"></head><body><div style="font-family: Arial, sans-serif;"><p>',
  '</p><a href="https://www.example.com/account">click here</a><br></div></body></html>\r\n',
  'Caf=C3=A9 na=C3=AFve r=C3=A9sum=C3=A9 =E2=80=93 soft=\r\nline break\r\n',
];

let table: Float64Array | null = null;

const JOIN = 0.05;
function isWord(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39);
}
function isText(b: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if ((b[i]! < 0x20 && b[i] !== 9 && b[i] !== 10 && b[i] !== 13) || b[i]! > 0x7e) return false;
  return true;
}

/** Hash of a 2- or 3-byte block into the 2^16 count table. */
function slot(a: number, b: number, c: number): number {
  return Math.imul((a << 16) | (b << 8) | c, 0x9e3779b1) >>> 16;
}

function sample(): Uint8Array {
  let seed = 0x2545f491;
  const rnd = () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) / 4294967296;
  };
  let s = '';
  for (let i = 0; i < 40; i++) {
    s += SAMPLE_HEAD[i % SAMPLE_HEAD.length];
    let line = '';
    for (let w = 0; w < 120; w++) {
      // a Zipf-like choice: common words far more often
      const word = WORDS[Math.floor(WORDS.length * rnd() * rnd())]!;
      line += (line ? ' ' : '') + word;
      if (line.length > 70) {
        s += line + (rnd() < 0.3 ? '.\r\n' : '\r\n');
        line = '';
      }
    }
    for (let l = 0; l < 8; l++) {
      for (let k = 0; k < 76; k++) s += B64[Math.floor(rnd() * 64)];
      s += '\r\n';
    }
  }
  return Buffer.from(s, 'latin1');
}

let uni: Float64Array | null = null;

/**
 * Per-block frequencies in the sample, and the byte frequencies: a block the
 * sample lacks is still as common as its bytes make it likely (a text
 * signature made of words the sample lacks is still made of common letters).
 * Built on first use; compile.ts calls it first thing, before a yield.
 */
export function counts(): Float64Array {
  if (table) return table;
  const t = new Float64Array(1 << 16);
  const u = new Float64Array(256);
  const s = sample();
  for (let i = 2; i < s.length; i++) {
    t[slot(s[i - 2]!, s[i - 1]!, s[i]!)]!++;
    t[slot(256, s[i - 1]!, s[i]!)]!++; // the 2-byte block, in its own key space
  }
  for (let i = 0; i < s.length; i++) u[s[i]!]!++;
  for (let i = 0; i < 256; i++) u[i] = (u[i]! + 0.01) / s.length;
  for (let i = 0; i < t.length; i++) t[i] = t[i]! / s.length;
  table = t;
  uni = u;
  return t;
}

/** How common the block ending at bytes[end] is (length 2 or 3), as an estimated probability. */
export function blockWeight(bytes: Uint8Array, end: number, block: 2 | 3): number {
  const t = counts();
  const u = uni!;
  const b = bytes[end - 1]!;
  const c = bytes[end]!;
  if (block === 2) return Math.max(t[slot(256, b, c)]!, u[b]! * u[c]!);
  const a = bytes[end - 2]!;
  return Math.max(t[slot(a, b, c)]!, u[a]! * u[b]! * u[c]!);
}

/**
 * The start of the rarest w-byte window of bytes[from..to) (all fixed bytes),
 * scoring the window's last block most: that is where the matcher stops.
 */
export function rarestWindow(bytes: Uint8Array, from: number, to: number, w: number, block: 2 | 3): { at: number; score: number } {
  let best = -1;
  let bestScore = Infinity;
  for (let at = from; at + w <= to; at++) {
    let score = 0;
    for (let end = at + block - 1; end < at + w; end++) score += blockWeight(bytes, end, block);
    score += 8 * blockWeight(bytes, at + w - 1, block);
    // in text, words and identifiers recur: a window that joins two of them
    // (across one or two separators) is far rarer than its blocks suggest
    if (isText(bytes, at, at + w)) {
      for (let j = at + 1; j + 1 < at + w; j++) {
        if (!isWord(bytes[j - 1]!) || isWord(bytes[j]!)) continue;
        if (isWord(bytes[j + 1]!) || (j + 2 < at + w && isWord(bytes[j + 2]!))) score *= JOIN;
      }
    }
    if (score < bestScore) {
      bestScore = score;
      best = at;
    }
  }
  return { at: best, score: bestScore };
}
