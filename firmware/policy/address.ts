// address.ts — strict parser of SMTP envelope paths (MAIL FROM / RCPT TO).
//
// What it does: takes the path token exactly as the client sent it, angle brackets
// included (`<user@example.com>`, `<>`), and either returns a normalised Mailbox or a
// refusal code with a short fixed reason. The grammar is RFC 5321 §4.1.2 minus
// everything that can route: source routes, `%` and `!` in the local part, quoted local
// parts, address literals (bracketed, or a bare IPv4 number such as `127.0.0.1` or
// `0x7f.1`) and trailing dots are refused, so that no later hop (Domino, an internal
// sendmail, a resolver) can be talked into relaying by an address we let through.
// The domain is folded to lowercase ASCII; internationalised domains are converted to
// A-labels with node:url domainToASCII and the result is checked again as strict LDH.
//
// What it must never do: throw, for any input; echo client bytes in a reason (reasons
// are constants, safe to put in an SMTP reply); take more than linear time (no
// backtracking regular expressions; input over 256 UTF-16 units is refused before any
// scan); accept anything it would not parse back to the same mailbox.
//
// Postmaster: RFC 5321 §4.5.1 requires accepting `<Postmaster>` (no domain) as a
// recipient. When opts.allowNull is false (the RCPT TO case) a raw path that is
// case-insensitively `<postmaster>` is accepted as
// { local: 'postmaster', domain: '', address: 'postmaster' }; the caller routes it to
// the local postmaster. With allowNull true (MAIL FROM) it is a syntax error.
//
// Called by: the SMTP edge (firmware/smtp) for every MAIL FROM and RCPT TO, before any
// policy check sees the envelope; policy code uses isRoutingTrick() to log and count
// refusals that look like relay probing.

import { domainToASCII } from 'node:url';

export type Mailbox = { local: string; domain: string; address: string };

export type PathRefusal =
  | 'syntax'
  | 'source-route'
  | 'percent-hack'
  | 'bang-path'
  | 'quoted-local-part'
  | 'trailing-dot'
  | 'address-literal'
  | 'too-long'
  | 'non-ascii'
  | 'domain';

export type PathResult =
  | { ok: true; mailbox: Mailbox | null }
  | { ok: false; refusal: PathRefusal; reason: string };

/** RFC 5321 §4.5.3.1.3: a whole path, brackets included, is at most 256 octets. */
const MAX_PATH_OCTETS = 256;
/** RFC 5321 §4.5.3.1.1 */
const MAX_LOCAL_OCTETS = 64;
/** RFC 5321 §4.5.3.1.2 */
const MAX_DOMAIN_OCTETS = 255;
const MAX_LABEL_OCTETS = 63;

// Single-character classes only: linear, no backtracking.
// Controls (C0, DEL, C1), any Unicode white space, and format characters (bidi
// overrides, BOM, soft hyphen, zero-width space) except ZWNJ/ZWJ, which IDNA
// validates in context.
const FORBIDDEN_CHAR = /[\p{Cc}\p{White_Space}]|(?![\u200c\u200d])\p{Cf}/u;

function refuse(refusal: PathRefusal, reason: string): PathResult {
  return { ok: false, refusal, reason };
}

function isAsciiAlnum(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function isHexDigit(c: number): boolean {
  return isDigit(c) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

// RFC 5322 atext without `%` and `!` (those are refused earlier as routing tricks).
const ATEXT_SPECIALS = "#$&'*+-/=?^_`{|}~";

function isAtext(c: number): boolean {
  return isAsciiAlnum(c) || ATEXT_SPECIALS.includes(String.fromCharCode(c));
}

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) > 0x7f) return false;
  }
  return true;
}

/** A label that inet_aton() would read as a number: decimal, octal or 0x-hex. */
function isNumericLabel(label: string): boolean {
  if (label.length === 0) return false;
  let start = 0;
  if (label.length >= 2 && label[0] === '0' && (label[1] === 'x' || label[1] === 'X')) {
    start = 2;
    for (let i = start; i < label.length; i++) {
      if (!isHexDigit(label.charCodeAt(i))) return false;
    }
    return true;
  }
  for (let i = start; i < label.length; i++) {
    if (!isDigit(label.charCodeAt(i))) return false;
  }
  return true;
}

function checkLocal(local: string): PathResult | null {
  if (local.length === 0) return refuse('syntax', 'empty local part');
  // Routing tricks first, so they are logged as such whatever else is wrong.
  if (local.includes('%')) return refuse('percent-hack', 'percent sign in local part is not accepted');
  if (local.includes('!')) return refuse('bang-path', 'bang path in local part is not accepted');
  if (!isAscii(local)) return refuse('non-ascii', 'non-ASCII local part needs SMTPUTF8, which is not offered');
  let previousDot = true; // a leading dot counts as a double dot
  for (let i = 0; i < local.length; i++) {
    const c = local.charCodeAt(i);
    if (c === 0x2e) {
      if (previousDot) return refuse('syntax', 'misplaced dot in local part');
      previousDot = true;
    } else if (isAtext(c)) {
      previousDot = false;
    } else {
      return refuse('syntax', 'invalid character in local part');
    }
  }
  if (previousDot) return refuse('syntax', 'misplaced dot in local part');
  if (local.length > MAX_LOCAL_OCTETS) return refuse('too-long', 'local part too long');
  return null;
}

/**
 * Validates an all-ASCII domain as strict LDH. Used on the client's own ASCII domain
 * and again on the output of domainToASCII, which is a URL host parser and would
 * otherwise let through whatever UTS46 mapping produced.
 */
function checkAsciiDomain(domain: string): PathResult | null {
  if (domain.endsWith('.')) return refuse('trailing-dot', 'trailing dot in domain is not accepted');
  for (let i = 0; i < domain.length; i++) {
    const c = domain.charCodeAt(i);
    if (!(isAsciiAlnum(c) || c === 0x2d || c === 0x2e)) return refuse('domain', 'invalid character in domain');
  }
  const labels = domain.split('.');
  for (const label of labels) {
    if (label.length === 0) return refuse('domain', 'empty label in domain');
    if (label.length > MAX_LABEL_OCTETS) return refuse('domain', 'domain label longer than 63 octets');
    if (label.startsWith('-') || label.endsWith('-')) return refuse('domain', 'domain label starts or ends with a hyphen');
  }
  // `127.0.0.1`, `0x7f.1`, `2130706433`: an IP address dressed as a domain.
  if (labels.length <= 4 && labels.every(isNumericLabel)) {
    return refuse('address-literal', 'address literals are not accepted');
  }
  if (labels.length < 2) return refuse('domain', 'domain needs at least two labels');
  const tld = labels[labels.length - 1] ?? '';
  const first = tld.charCodeAt(0);
  if (!((first >= 0x41 && first <= 0x5a) || (first >= 0x61 && first <= 0x7a))) {
    return refuse('domain', 'top-level domain must start with a letter');
  }
  if (domain.length > MAX_DOMAIN_OCTETS) return refuse('too-long', 'domain too long');
  return null;
}

function normaliseDomain(raw: string): { domain: string } | PathResult {
  if (raw.length === 0) return refuse('syntax', 'missing domain');
  if (raw.startsWith('[')) return refuse('address-literal', 'address literals are not accepted');
  if (isAscii(raw)) {
    const bad = checkAsciiDomain(raw);
    if (bad !== null) return bad;
    return { domain: raw.toLowerCase() };
  }
  // Internationalised: ASCII parts must already be LDH or dots, so that the URL host
  // parser behind domainToASCII never sees `/`, `:`, `@`, `%` or the like from us.
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c <= 0x7f && !(isAsciiAlnum(c) || c === 0x2d || c === 0x2e)) {
      return refuse('domain', 'invalid character in domain');
    }
  }
  let ascii: string;
  try {
    ascii = domainToASCII(raw);
  } catch {
    return refuse('domain', 'invalid internationalised domain');
  }
  if (typeof ascii !== 'string' || ascii.length === 0) return refuse('domain', 'invalid internationalised domain');
  // domainToASCII lowercases; check it strictly anyway (UTS46 maps U+3002 to a dot,
  // fullwidth digits to digits, and so on).
  const bad = checkAsciiDomain(ascii);
  if (bad !== null) return bad;
  return { domain: ascii.toLowerCase() };
}

function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff) {
      n += 4; // a well-formed pair (checked before this is called)
      i++;
    } else n += 3;
  }
  return n;
}

/**
 * Parses one envelope path. `opts.allowNull` is true at MAIL FROM (where `<>` is the
 * null reverse-path) and false at RCPT TO (where `<postmaster>` is accepted instead).
 * Never throws.
 */
export function parsePath(raw: string, opts: { allowNull: boolean }): PathResult {
  try {
    return parse(raw, opts);
  } catch {
    // Unreachable by design; fail closed rather than throw into the SMTP edge.
    return refuse('syntax', 'malformed path');
  }
}

function parse(raw: string, opts: { allowNull: boolean }): PathResult {
  if (typeof raw !== 'string') return refuse('syntax', 'malformed path');
  const allowNull = opts !== null && typeof opts === 'object' && opts.allowNull === true;
  if (raw.length < 2 || !raw.startsWith('<') || !raw.endsWith('>')) {
    return refuse('syntax', 'path must be enclosed in angle brackets');
  }
  // UTF-16 units never exceed UTF-8 octets, so this bound is safe and caps all later work.
  if (raw.length > MAX_PATH_OCTETS) return refuse('too-long', 'path too long');
  if (!raw.isWellFormed() || FORBIDDEN_CHAR.test(raw)) {
    return refuse('syntax', 'control or space character in path');
  }
  if (utf8Length(raw) > MAX_PATH_OCTETS) return refuse('too-long', 'path too long');

  const inner = raw.slice(1, -1);
  if (inner.includes('<') || inner.includes('>')) return refuse('syntax', 'nested angle brackets');

  if (inner.length === 0) {
    if (allowNull) return { ok: true, mailbox: null };
    return refuse('syntax', 'null path not allowed here');
  }
  if (!allowNull && inner.toLowerCase() === 'postmaster') {
    return { ok: true, mailbox: { local: 'postmaster', domain: '', address: 'postmaster' } };
  }

  if (inner.startsWith('@')) {
    if (inner.includes(':')) return refuse('source-route', 'source routes are not accepted');
    return refuse('syntax', 'missing local part');
  }
  if (inner.includes('"')) return refuse('quoted-local-part', 'quoted local parts are not accepted');

  const at = inner.indexOf('@');
  if (at < 0) return refuse('syntax', 'missing @domain');
  if (inner.indexOf('@', at + 1) >= 0) return refuse('syntax', 'more than one @ in path');

  const localResult = checkLocal(inner.slice(0, at));
  if (localResult !== null) return localResult;
  const local = inner.slice(0, at);

  const domainResult = normaliseDomain(inner.slice(at + 1));
  if ('ok' in domainResult) return domainResult;
  const domain = domainResult.domain;

  const address = `${local}@${domain}`;
  if (address.length + 2 > MAX_PATH_OCTETS) return refuse('too-long', 'path too long');
  return { ok: true, mailbox: { local, domain, address } };
}

/**
 * True for the refusals that could make a later hop relay (and are worth logging as
 * probing); false for plain malformation, length and character-set refusals.
 */
export function isRoutingTrick(refusal: PathRefusal): boolean {
  switch (refusal) {
    case 'source-route':
    case 'percent-hack':
    case 'bang-path':
    case 'quoted-local-part':
    case 'address-literal':
    case 'trailing-dot':
      return true;
    case 'syntax':
    case 'too-long':
    case 'non-ascii':
    case 'domain':
      return false;
    default: {
      const unknown: never = refusal;
      void unknown;
      return false;
    }
  }
}
