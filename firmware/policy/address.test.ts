import { test } from 'node:test';
import assert from 'node:assert/strict';
import { domainToASCII } from 'node:url';
import { isRoutingTrick, parsePath, type Mailbox, type PathRefusal, type PathResult } from './address.ts';

const RCPT = { allowNull: false };
const MAIL = { allowNull: true };

const ALL_REFUSALS: readonly PathRefusal[] = [
  'syntax',
  'source-route',
  'percent-hack',
  'bang-path',
  'quoted-local-part',
  'trailing-dot',
  'address-literal',
  'too-long',
  'non-ascii',
  'domain',
];

function mb(local: string, domain: string): Mailbox {
  return { local, domain, address: domain === '' ? local : `${local}@${domain}` };
}

function refusalOf(result: PathResult): PathRefusal | 'accepted' {
  return result.ok ? 'accepted' : result.refusal;
}

/** A reason goes into an SMTP reply: printable ASCII, one short line. */
function assertSafeReason(reason: string): void {
  assert.match(reason, /^[\x20-\x7e]{1,80}$/);
}

const l63 = 'a'.repeat(63);
const local64 = 'l'.repeat(64);
// <l@aaa…(63).bbb…(63).ccc…(63).ddd…(56).com> is exactly 256 octets.
const domain252 = `${l63}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(56)}.com`;

const uml40 = 'ü'.repeat(40);
const xnU40 = `xn--td${'a'.repeat(40)}`;
const uml50 = 'ü'.repeat(50);

const accepted: Array<[raw: string, opts: { allowNull: boolean }, expected: Mailbox | null]> = [
  ['<user@example.com>', RCPT, mb('user', 'example.com')],
  ['<user@example.com>', MAIL, mb('user', 'example.com')],
  ['<User.Name@Example.COM>', RCPT, mb('User.Name', 'example.com')],
  ['<USER@EXAMPLE.COM>', RCPT, mb('USER', 'example.com')],
  ['<user+tag@sub.example.co.uk>', RCPT, mb('user+tag', 'sub.example.co.uk')],
  ["<#$&'*+-/=?^_`{|}~@example.com>", RCPT, mb("#$&'*+-/=?^_`{|}~", 'example.com')],
  ['<a.b.c@example.com>', RCPT, mb('a.b.c', 'example.com')],
  ['<x@a-b.example>', RCPT, mb('x', 'a-b.example')],
  ['<x@ab--cd.example>', RCPT, mb('x', 'ab--cd.example')],
  ['<x@1example.com>', RCPT, mb('x', '1example.com')],
  ['<x@123.example>', RCPT, mb('x', '123.example')],
  ['<x@1.2.3.example>', RCPT, mb('x', '1.2.3.example')],
  ['<user@bücher.de>', RCPT, mb('user', 'xn--bcher-kva.de')],
  ['<user@BÜCHER.DE>', RCPT, mb('user', 'xn--bcher-kva.de')],
  ['<user@xn--bcher-kva.de>', RCPT, mb('user', 'xn--bcher-kva.de')],
  ['<user@XN--BCHER-KVA.DE>', RCPT, mb('user', 'xn--bcher-kva.de')],
  ['<user@例え.テスト>', RCPT, mb('user', 'xn--r8jz45g.xn--zckzah')],
  ['<user@straße.de>', RCPT, mb('user', 'xn--strae-oqa.de')],
  ['<user@ｅｘａｍｐｌｅ.com>', RCPT, mb('user', 'example.com')], // UTS46 maps fullwidth to ASCII
  ['<user@bücher。de>', RCPT, mb('user', 'xn--bcher-kva.de')], // ideographic full stop is a dot
  ['<>', MAIL, null],
  ['<postmaster>', RCPT, mb('postmaster', '')],
  ['<Postmaster>', RCPT, mb('postmaster', '')],
  ['<POSTMASTER>', RCPT, mb('postmaster', '')],
  ['<postmaster@example.com>', MAIL, mb('postmaster', 'example.com')],
  [`<${local64}@example.com>`, RCPT, mb(local64, 'example.com')],
  [`<x@${l63}.example>`, RCPT, mb('x', `${l63}.example`)],
  [`<l@${domain252}>`, RCPT, mb('l', domain252)],
  // 249 octets as sent, 147 normalised: the A-labels of repeated characters are short.
  [`<u@${uml40}.${uml40}.${uml40}.de>`, RCPT, mb('u', `${xnU40}.${xnU40}.${xnU40}.de`)],
];

test('accepted paths normalise exactly', () => {
  assert.equal(domain252.length, 252);
  assert.equal(`<l@${domain252}>`.length, 256);
  for (const [raw, opts, expected] of accepted) {
    assert.deepEqual(parsePath(raw, opts), { ok: true, mailbox: expected }, raw);
  }
});

test('accepted mailboxes re-parse to themselves', () => {
  for (const [raw, opts] of accepted) {
    const first = parsePath(raw, opts);
    assert.ok(first.ok, raw);
    if (first.mailbox === null) continue;
    assert.deepEqual(parsePath(`<${first.mailbox.address}>`, opts), first, raw);
  }
});

const C0 = Array.from({ length: 0x20 }, (_, i) => String.fromCharCode(i));

const refused: Array<[raw: string, opts: { allowNull: boolean }, expected: PathRefusal]> = [
  // source routes
  ['<@a:b@c>', RCPT, 'source-route'],
  ['<@a,@b:c@d>', RCPT, 'source-route'],
  ['<@relay.example:user@example.com>', MAIL, 'source-route'],
  // percent hack and bang paths, also towards an otherwise fine domain
  ['<user%other.org@example.com>', RCPT, 'percent-hack'],
  ['<user%other.org@example.com>', MAIL, 'percent-hack'],
  ['<%@example.com>', RCPT, 'percent-hack'],
  ['<other.org!user@example.com>', RCPT, 'bang-path'],
  ['<!@example.com>', RCPT, 'bang-path'],
  // quoted local parts
  ['<"user@other.org"@example.com>', RCPT, 'quoted-local-part'],
  ['<"user"@example.com>', RCPT, 'quoted-local-part'],
  ['<"user%other.org"@example.com>', RCPT, 'quoted-local-part'],
  ['<a"b"c@example.com>', RCPT, 'quoted-local-part'],
  // trailing dots
  ['<user@example.com.>', RCPT, 'trailing-dot'],
  ['<user@example.com..>', RCPT, 'trailing-dot'],
  ['<user@bücher.de.>', RCPT, 'trailing-dot'],
  ['<user@example.com。>', RCPT, 'trailing-dot'], // U+3002 maps to a dot
  // address literals, bracketed or dressed up as a domain
  ['<user@[127.0.0.1]>', RCPT, 'address-literal'],
  ['<user@[IPv6:::1]>', RCPT, 'address-literal'],
  ['<user@[example.com]>', RCPT, 'address-literal'],
  ['<user@127.0.0.1>', RCPT, 'address-literal'],
  ['<user@127.1>', RCPT, 'address-literal'],
  ['<user@0x7f.1>', RCPT, 'address-literal'],
  ['<user@0x7f.0x0.0.01>', RCPT, 'address-literal'],
  ['<user@2130706433>', RCPT, 'address-literal'],
  ['<user@１２７.0.0.1>', RCPT, 'address-literal'], // fullwidth digits map to ASCII
  ['<user@０x7f.1>', RCPT, 'address-literal'],
  // domains
  ['<user@localhost>', RCPT, 'domain'],
  ['<user@bücher>', RCPT, 'domain'],
  ['<user@-example.com>', RCPT, 'domain'],
  ['<user@example-.com>', RCPT, 'domain'],
  ['<user@example.-com>', RCPT, 'domain'],
  ['<user@example..com>', RCPT, 'domain'],
  ['<user@.example.com>', RCPT, 'domain'],
  ['<user@exa_mple.com>', RCPT, 'domain'],
  ['<user@example.com:25>', RCPT, 'domain'],
  ['<user@example.com/x>', RCPT, 'domain'],
  ['<user@bücher.de/x>', RCPT, 'domain'],
  ['<user@bücher.de:25>', RCPT, 'domain'],
  ['<user@exa\\mple.com>', RCPT, 'domain'],
  ['<user@example.com%other.org>', RCPT, 'domain'],
  ['<user@a＠b.com>', RCPT, 'domain'], // fullwidth @ maps to @
  ['<user@example.123>', RCPT, 'domain'],
  ['<user@1.2.3.4.5>', RCPT, 'domain'],
  ['<user@example.0x1>', RCPT, 'domain'],
  ['<user@x[1.2.3.4]>', RCPT, 'domain'],
  [`<x@${'a'.repeat(64)}.example>`, RCPT, 'domain'],
  // plain syntax
  ['<user@@example.com>', RCPT, 'syntax'],
  ['<user@example.com@other.org>', RCPT, 'syntax'],
  ['<user\\@x@example.com>', RCPT, 'syntax'],
  ['<.user@example.com>', RCPT, 'syntax'],
  ['<user.@example.com>', RCPT, 'syntax'],
  ['<us..er@example.com>', RCPT, 'syntax'],
  ['<.@example.com>', RCPT, 'syntax'],
  ['<user\\x@example.com>', RCPT, 'syntax'],
  ['<user[1]@example.com>', RCPT, 'syntax'],
  ['<a:b@example.com>', RCPT, 'syntax'],
  ['<a,b@example.com>', RCPT, 'syntax'],
  ['<(comment)user@example.com>', RCPT, 'syntax'],
  ['<user;x@example.com>', RCPT, 'syntax'],
  ['user@example.com', RCPT, 'syntax'],
  ['<user@example.com', RCPT, 'syntax'],
  ['user@example.com>', RCPT, 'syntax'],
  ['<<user@example.com>>', RCPT, 'syntax'],
  ['<user<x>@example.com>', RCPT, 'syntax'],
  ['<user@exa mple.com>', RCPT, 'syntax'],
  ['< user@example.com>', RCPT, 'syntax'],
  ['<user@example.com >', RCPT, 'syntax'],
  [' <user@example.com>', RCPT, 'syntax'],
  ['<user@example.com>\r\n', RCPT, 'syntax'],
  ['<user>', RCPT, 'syntax'],
  ['<user@>', RCPT, 'syntax'],
  ['<@example.com>', RCPT, 'syntax'],
  ['<@>', RCPT, 'syntax'],
  ['<>', RCPT, 'syntax'],
  ['<postmaster>', MAIL, 'syntax'],
  ['<postmaster.>', RCPT, 'syntax'],
  ['', RCPT, 'syntax'],
  ['<', RCPT, 'syntax'],
  ['>', RCPT, 'syntax'],
  ['><', RCPT, 'syntax'],
  ...C0.map((c): [string, { allowNull: boolean }, PathRefusal] => [`<us${c}er@example.com>`, RCPT, 'syntax']),
  ...C0.map((c): [string, { allowNull: boolean }, PathRefusal] => [`<user@exa${c}mple.com>`, RCPT, 'syntax']),
  ['<user\x7f@example.com>', RCPT, 'syntax'], // DEL
  ['<user@example.com\x00>', RCPT, 'syntax'],
  ['<\x00>', MAIL, 'syntax'],
  ['<user\u0085@example.com>', RCPT, 'syntax'], // NEL (C1)
  ['<user@exa\u00a0mple.com>', RCPT, 'syntax'], // no-break space
  ['<user@example.com\u2028>', RCPT, 'syntax'], // line separator
  ['<user@exa\u00admple.com>', RCPT, 'syntax'], // soft hyphen: UTS46 would silently drop it
  ['<user@exa\u202emple.com>', RCPT, 'syntax'], // bidi override
  ['<\ufeffuser@example.com>', RCPT, 'syntax'], // BOM
  ['<user@exa\u200bmple.com>', RCPT, 'syntax'], // zero-width space
  ['<user@\ud800.com>', RCPT, 'syntax'], // lone surrogate
  ['<user\udc00@example.com>', RCPT, 'syntax'],
  // non-ASCII local parts (no SMTPUTF8)
  ['<jöran@example.com>', RCPT, 'non-ascii'],
  ['<用户@例え.テスト>', RCPT, 'non-ascii'],
  ['<user＠example.com@x>', RCPT, 'non-ascii'], // fullwidth @ is just a non-ASCII character
  ['<user％other.org@example.com>', RCPT, 'non-ascii'],
  ['<😀@example.com>', RCPT, 'non-ascii'],
  // lengths
  [`<${'l'.repeat(65)}@example.com>`, RCPT, 'too-long'],
  [`<ll@${domain252}>`, RCPT, 'too-long'], // 257 octets
  [`<l@${domain252.slice(0, -5)}ü.com>`, RCPT, 'too-long'], // 256 UTF-16 units, 257 octets
  [`<${'x'.repeat(300)}>`, RCPT, 'too-long'],
  // 309 octets as sent (the RFC limit applies to what was sent), 177 normalised.
  [`<u@${uml50}.${uml50}.${uml50}.de>`, RCPT, 'too-long'],
];

test('every trick and malformation is refused with its exact code', () => {
  for (const [raw, opts, expected] of refused) {
    const result = parsePath(raw, opts);
    assert.equal(refusalOf(result), expected, JSON.stringify(raw));
  }
});

test('U-label domains that fit raw but expand past the limits as A-labels are too long', () => {
  const cases: Array<[ascii: number, reason: string]> = [
    [41, 'path too long'], // path 227 octets raw, 257 normalised; domain 252
    [46, 'domain too long'], // domain 272 normalised
  ];
  for (const [k, reason] of cases) {
    const label = `${'a'.repeat(k)}ü`;
    const domain = `${label}.${label}.${label}.${label}.${label}.com`;
    const raw = `<u@${domain}>`;
    const ascii = domainToASCII(domain);
    assert.ok(Buffer.byteLength(raw) <= 256, 'precondition: raw fits');
    assert.ok(ascii.split('.').every((l) => l.length <= 63), 'precondition: labels fit');
    assert.ok(`<u@${ascii}>`.length > 256, 'precondition: normalised path does not fit');
    assert.equal(ascii.length > 255, reason === 'domain too long', 'precondition: domain length');
    assert.deepEqual(parsePath(raw, RCPT), { ok: false, refusal: 'too-long', reason });
  }
});

test('reasons are fixed, reply-safe text and never echo client bytes', () => {
  const marker = 'zqxjk';
  const withMarker: string[] = [
    `<@${marker}.example:u@example.com>`,
    `<${marker}%o.org@example.com>`,
    `<o.org!${marker}@example.com>`,
    `<"${marker}"@example.com>`,
    `<u@${marker}.example.>`,
    `<u@[${marker}]>`,
    `<${marker}${'l'.repeat(70)}@example.com>`,
    `<${marker}ö@example.com>`,
    `<u@${marker}>`,
    `<u@${marker}_.example>`,
    `<${marker}..x@example.com>`,
    `<${marker}\r\n@example.com>`,
    `${marker}@example.com`,
  ];
  const seen = new Set<PathRefusal>();
  for (const raw of withMarker) {
    const result = parsePath(raw, RCPT);
    assert.equal(result.ok, false, raw);
    if (result.ok) continue;
    seen.add(result.refusal);
    assertSafeReason(result.reason);
    assert.ok(!result.reason.includes(marker), raw);
  }
  assert.equal(seen.size, ALL_REFUSALS.length);
  assert.deepEqual(parsePath('<@a:b@c>', RCPT), {
    ok: false,
    refusal: 'source-route',
    reason: 'source routes are not accepted',
  });
  assert.deepEqual(parsePath('<user%other.org@example.com>', RCPT), {
    ok: false,
    refusal: 'percent-hack',
    reason: 'percent sign in local part is not accepted',
  });
});

test('isRoutingTrick covers exactly the refusals that could make a later hop relay', () => {
  const tricks = ALL_REFUSALS.filter(isRoutingTrick);
  assert.deepEqual(tricks, [
    'source-route',
    'percent-hack',
    'bang-path',
    'quoted-local-part',
    'trailing-dot',
    'address-literal',
  ]);
});

test('never throws on non-string input or odd options', () => {
  const loose = parsePath as unknown as (raw: unknown, opts: unknown) => PathResult;
  for (const raw of [undefined, null, 42, {}, ['<a@b.example>'], Symbol('x')]) {
    assert.equal(refusalOf(loose(raw, RCPT)), 'syntax');
  }
  assert.deepEqual(loose('<a@b.example>', undefined), { ok: true, mailbox: mb('a', 'b.example') });
  assert.equal(refusalOf(loose('<>', undefined)), 'syntax');
  assert.equal(refusalOf(loose('<>', { allowNull: 'yes' })), 'syntax');
});

test('100 KB inputs are refused by the length bound, before any pattern looks at them', () => {
  const n = 100 * 1024;
  const shapes: Array<[string, PathRefusal]> = [
    [`<${'a'.repeat(n)}@example.com>`, 'too-long'],
    [`<${'@'.repeat(n)}>`, 'too-long'],
    [`<${'.'.repeat(n)}>`, 'too-long'],
    [`<${'a.'.repeat(n / 2)}@example.com>`, 'too-long'],
    [`<u@${'a-'.repeat(n / 2)}.com>`, 'too-long'],
    [`<${'<'.repeat(n)}>`, 'too-long'],
    ['<'.repeat(n), 'syntax'],
    [`${'\x00'.repeat(n)}`, 'syntax'],
    [`<u@${'ü'.repeat(n)}.de>`, 'too-long'],
    // a control character would be refused by a pattern; the length bound answers first
    [`<${'\x00'.repeat(n)}>`, 'too-long'],
  ];
  for (const [raw, expected] of shapes) {
    assert.equal(refusalOf(parsePath(raw, RCPT)), expected);
  }
});

// Deterministic fuzz: mulberry32.
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const PIECES = [
  '<', '>', '@', '.', ':', ',', '%', '!', '"', '[', ']', '\\', ' ', '-', '_', '+', '=', '/',
  'a', 'Z', '0', '9', 'x', 'example', 'com', 'xn--', 'IPv6:', '127', '0x7f', 'postmaster',
  'ü', 'é', '例', 'ｅ', '。', '．', '＠', '％', '\u200d', '\u00ad', '\ud800', '😀',
  '\x00', '\r', '\n', '\t', '\x7f', '\u0085',
];
const LABELS = ['example', 'com', 'a', 'B', 'xn--bcher-kva', 'bücher', 'ß', '1', '0x7f', 'a-b', '-a', 'a-', '例え', 'ＣＯＭ', ''];
const LOCALS = ['user', 'U.ser', 'a', "o'neil", 'x+y', 'a.', '.a', 'a..b', 'a%b', 'a!b', '"q"', 'jö', 'l'.repeat(64), ''];
const DOTS = ['.', '.', '.', '。', '．'];

test('fuzz: never throws, accepted results are clean and stable', () => {
  const rand = prng(0x6d6f6174);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
  const inputs: string[] = [];
  for (let i = 0; i < 3000; i++) {
    // Free-form strings from SMTP-significant pieces, mostly bracketed.
    let s = '';
    const len = Math.floor(rand() * 24);
    for (let j = 0; j < len; j++) s += pick(PIECES);
    inputs.push(rand() < 0.7 ? `<${s}>` : s);
  }
  for (let i = 0; i < 3000; i++) {
    // Near-valid shapes, so that plenty are accepted.
    const labels: string[] = [];
    const count = 1 + Math.floor(rand() * 4);
    let domain = '';
    for (let j = 0; j < count; j++) labels.push(pick(LABELS));
    domain = labels.map((l, j) => (j === 0 ? l : pick(DOTS) + l)).join('');
    let s = `<${pick(LOCALS)}@${domain}>`;
    if (rand() < 0.1) {
      const at = Math.floor(rand() * s.length);
      s = s.slice(0, at) + pick(PIECES) + s.slice(at);
    }
    inputs.push(s);
  }
  const outcomes = new Map<string, number>();
  for (const raw of inputs) {
    for (const opts of [RCPT, MAIL]) {
      let result: PathResult;
      try {
        result = parsePath(raw, opts);
      } catch (err) {
        assert.fail(`threw on ${JSON.stringify(raw)}: ${String(err)}`);
      }
      const key = refusalOf(result);
      outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
      if (!result.ok) {
        assert.ok(ALL_REFUSALS.includes(result.refusal), JSON.stringify(raw));
        assertSafeReason(result.reason);
        continue;
      }
      const m = result.mailbox;
      if (m === null) {
        assert.equal(raw, '<>');
        assert.equal(opts.allowNull, true);
        continue;
      }
      assert.equal(m.address, m.domain === '' ? m.local : `${m.local}@${m.domain}`, raw);
      assert.doesNotMatch(m.address, /[%!"[\]\\:\s<>]/, raw);
      assert.doesNotMatch(m.address, /[^\x21-\x7e]/, raw);
      assert.ok(!m.address.endsWith('.'), raw);
      assert.equal(m.domain, m.domain.toLowerCase(), raw);
      assert.deepEqual(parsePath(`<${m.address}>`, opts), result, raw);
    }
  }
  // The fuzz must exercise both sides and most codes, or it proves nothing.
  assert.ok((outcomes.get('accepted') ?? 0) >= 300, JSON.stringify([...outcomes]));
  for (const code of ALL_REFUSALS) {
    assert.ok((outcomes.get(code) ?? 0) > 0, `fuzz never produced ${code}: ${JSON.stringify([...outcomes])}`);
  }
});
