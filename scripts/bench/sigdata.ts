/*
 * scripts/bench/sigdata.ts: deterministic test data for the signature engine's
 * benchmark and tests: English-like text, mail-like data (mostly base64 with
 * text and HTML parts, as mail is), random bytes, and random signatures.
 *
 * The vocabulary here is deliberately not the one firmware/scan/signatures/
 * rarity.ts learns from. Must never: use Math.random (every run sees the same
 * bytes for a seed). Called by scripts/bench/signatures.ts and the tests in
 * firmware/scan/signatures/.
 */
import type { BodySignature } from '../../firmware/scan/signatures/types.ts';

/** xorshift32: a small deterministic generator; returns floats in [0, 1). */
export function prng(seed: number): () => number {
  let s = seed | 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}

const VOCAB = (
  'a about above across act add after again against age ago agree air all allow almost alone along already also although always among ' +
  'amount and animal another answer any appear apply area arm around arrive art as ask at away baby back bad bank base be bear beat ' +
  'beautiful because become bed before begin behind believe best better between big bill black blood blue board body book born both ' +
  'box boy break bring brother build building business but buy by call camera campaign can cancer candidate capital car card care ' +
  'career carry case catch cause cell center central century certain chair challenge chance change character charge check child ' +
  'choice choose church citizen city civil claim class clear close coach cold collection college color come commercial common community ' +
  'company compare computer concern condition conference congress consider consumer contain continue control cost could country ' +
  'couple course court cover create crime cultural culture cup current customer cut dark data daughter day dead deal death debate ' +
  'decade decide decision deep defense degree democrat describe design despite detail determine develop development die difference ' +
  'different difficult dinner direction director discover discuss discussion disease do doctor dog door down draw dream drive drop ' +
  'drug during each early east easy eat economic economy edge education effect effort eight either election else employee end energy ' +
  'enjoy enough enter entire environment especially establish even evening event ever every everybody evidence exactly example ' +
  'executive exist expect experience expert explain eye face fact factor fail fall family far fast father fear federal feel feeling ' +
  'few field fight figure fill film final finally financial find fine finger finish fire firm first fish five floor fly focus follow ' +
  'food foot for force foreign forget form former forward four free friend from front full fund future game garden gas general ' +
  'generation get girl give glass go goal good government great green ground group grow growth guess gun guy hair half hand hang ' +
  'happen happy hard have he head health hear heart heat heavy help her here herself high him himself his history hit hold home hope ' +
  'hospital hot hotel hour house how however huge human hundred husband idea identify if image imagine impact important improve in ' +
  'include including increase indeed indicate individual industry information inside instead institution interest interesting ' +
  'international interview into investment involve issue it item its itself job join just keep key kid kill kind kitchen know ' +
  'knowledge land language large last late later laugh law lawyer lay lead leader learn least leave left leg legal less let letter ' +
  'level lie life light like likely line list listen little live local long look lose loss lot love low machine magazine main ' +
  'maintain major majority make man manage management manager many market marriage material matter may maybe me mean measure ' +
  'media medical meet meeting member memory mention message method middle might military million mind minute miss mission model ' +
  'modern moment money month more morning most mother mouth move movement movie much music must my myself name nation national'
).split(' ');

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

function textLines(r: () => number, bytes: number): string {
  let s = '';
  let line = '';
  while (s.length < bytes) {
    let w = VOCAB[Math.floor(VOCAB.length * r() * r())]!;
    if (!line || r() < 0.06) w = w[0]!.toUpperCase() + w.slice(1);
    line += (line ? ' ' : '') + w;
    if (r() < 0.05) line += r() < 0.5 ? ',' : '.';
    if (line.length > 66 + r() * 10) {
      s += line + '\r\n';
      line = '';
      if (r() < 0.08) s += '\r\n';
    }
  }
  return s;
}

function base64Lines(r: () => number, bytes: number): string {
  let s = '';
  while (s.length < bytes) {
    for (let k = 0; k < 76; k++) s += B64[Math.floor(r() * 64)];
    s += '\r\n';
  }
  return s;
}

function fit(s: string, size: number): Buffer {
  const b = Buffer.from(s, 'latin1');
  return b.length >= size ? b.subarray(0, size) : Buffer.concat([b, Buffer.alloc(size - b.length, 0x20)]);
}

/** English-like text in CRLF lines. */
export function textData(size: number, seed = 1): Buffer {
  return fit(textLines(prng(seed), size), size);
}

/** Random bytes. */
export function randomData(size: number, seed = 2): Buffer {
  const r = prng(seed);
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) b[i] = (r() * 256) | 0;
  return b;
}

/** Lines of base64 of random data. */
export function base64Data(size: number, seed = 3): Buffer {
  return fit(base64Lines(prng(seed), size), size);
}

/** Messages as mail is: headers, a text part, an HTML part and a base64 attachment (about 3/4 of the bytes). */
export function mailData(size: number, seed = 4): Buffer {
  const r = prng(seed);
  let s = '';
  let n = 0;
  while (s.length < size) {
    n++;
    const b = `----=_Part_${n}_${Math.floor(r() * 1e9)}`;
    s +=
      `Received: from mx${n % 7}.example.net (mx${n % 7}.example.net [198.51.100.${n % 250}])\r\n\tby gw.example.org with ESMTPS id ${n.toString(16)}\r\n` +
      `From: sender${n}@example.net\r\nTo: rcpt@example.org\r\nSubject: ${textLines(r, 30).trim()}\r\n` +
      `MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="${b}"\r\n\r\n` +
      `--${b}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${textLines(r, 1500 + r() * 3000)}\r\n` +
      `--${b}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>${textLines(r, 800 + r() * 1500).replace(/\r\n\r\n/g, '</p><p>')}</p></body></html>\r\n` +
      `--${b}\r\nContent-Type: application/octet-stream; name="file${n}.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\n` +
      `${base64Lines(r, 8000 + r() * 40000)}--${b}--\r\n`;
  }
  return fit(s, size);
}

function textBytes(r: () => number, n: number): Buffer {
  let s = '';
  while (s.length < n) s += (s ? ' ' : '') + VOCAB[Math.floor(VOCAB.length * r())]!;
  return Buffer.from(s.slice(0, n), 'latin1');
}

function randomBytes(r: () => number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (r() * 256) | 0;
  return b;
}

/**
 * n random body signatures of 8-64 fixed bytes, random bytes (kind 'binary')
 * or words of the text vocabulary (kind 'text': the hard case on text, every
 * block of them is common there); one in ten with a wildcard (`??`, `*`,
 * `{n-m}`) between two fixed runs of at least 8 bytes. Kind 'short': random
 * bytes, a run of 2, `??`, a run of 3 (they need the short engine).
 */
export function randomSignatures(n: number, seed = 5, kind: 'binary' | 'text' | 'short' = 'binary'): BodySignature[] {
  const r = prng(seed);
  const out: BodySignature[] = [];
  for (let i = 0; i < n && kind === 'short'; i++) {
    // runs of 2 and 3 bytes around a wildcard, as in signatures of file headers
    out.push({ name: `Bench.Short-${i}`, hex: `${randomBytes(r, 2).toString('hex')}??${randomBytes(r, 3).toString('hex')}`, offset: '*' });
  }
  for (let i = 0; i < n && kind !== 'short'; i++) {
    const len = 8 + Math.floor(r() * 57);
    const bytes = (kind === 'text' ? textBytes : randomBytes)(r, len);
    let hex = bytes.toString('hex');
    if (r() < 0.1 && len >= 16) {
      const cut = 8 + Math.floor(r() * (len - 15));
      const wild = ['??', '*', '{2-8}', '????', '{-20}'][Math.floor(r() * 5)]!;
      hex = `${bytes.subarray(0, cut).toString('hex')}${wild}${bytes.subarray(cut).toString('hex')}`;
    }
    out.push({ name: `Bench.Sig-${i}`, hex, offset: '*' });
  }
  return out;
}
