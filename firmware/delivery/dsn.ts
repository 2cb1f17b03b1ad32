// dsn.ts — builds an RFC 3464 delivery status notification (a bounce or a
// delay warning) as the raw bytes of a new multipart/report message, ready to
// be queued from the null sender <> to the original envelope sender.
//
// The report has three parts: a plain-text explanation for people, the
// machine-readable message/delivery-status, and the original header block as
// text/rfc822-headers. The original body is never returned.
//
// It must never: echo a message body; emit a byte above 0x7f, a bare CR or LF
// or a line over 998 octets; let an outside value (address, remote reply,
// original header) start a header line or a MIME boundary of its own; build a
// report addressed to the null sender (a bounce of a bounce). It does no I/O
// and parses no mail text beyond splitting the original headers into lines.
//
// Called by the delivery agent when a recipient fails permanently or has been
// deferred long enough to warn the sender; the caller queues the returned
// bytes with envelope sender <> and envelope recipient input.sender.

import { randomBytes } from 'node:crypto';

export type DsnRecipient = {
  address: string; // final recipient (rfc822;address)
  originalRecipient?: string; // from ORCPT if known
  action: 'failed' | 'delayed';
  status: string; // enhanced status like '5.1.1' or '4.4.1'
  remoteMta?: string; // host that answered; emitted as 'dns; host'
  diagnostic?: string; // the remote SMTP reply text; emitted as 'smtp; ...'
  lastAttempt?: Date;
  willRetryUntil?: Date; // for delayed
};

export type DsnInput = {
  reportingMta: string; // our hostname
  queueId: string;
  sender: string; // original envelope sender, the DSN recipient (To:)
  arrivalDate: Date;
  envelopeId?: string; // ENVID
  recipients: DsnRecipient[]; // at least one
  originalHeaders: Buffer; // original header block, excluding the blank line
  returnFull?: false; // headers only (text/rfc822-headers); bodies are never echoed
  now?: Date; // for tests
  messageIdDomain?: string; // defaults to reportingMta
};

/** Longest line allowed on the wire, without its CRLF (RFC 5322 §2.1.1). */
export const MAX_LINE = 998;
/** Cap on the original header block returned in part 3, in octets including CRLFs. */
export const MAX_ORIGINAL_HEADERS = 64 * 1024;

const SOFT_LINE = 78; // preferred header line length (RFC 5322 §2.1.1)
const TEXT_WIDTH = 76; // width of the human-readable part
const MAX_DIAGNOSTIC = 900; // chars of remote reply kept
const MAX_ADDRESS = 320; // chars of an address kept
const CRLF = '\r\n';

/**
 * Builds the DSN. Throws only on input that must not produce a report at all:
 * no recipients, or a null sender (never bounce a bounce).
 */
export function buildDsn(input: DsnInput): Buffer {
  if (input.recipients.length === 0) {
    throw new RangeError('buildDsn: at least one recipient is required');
  }
  const sender = cleanAddress(input.sender);
  if (sender === '' || sender.toLowerCase().startsWith('mailer-daemon@')) {
    throw new RangeError('buildDsn: refusing to report to the null sender or a mailer-daemon');
  }

  const now = validDate(input.now) ?? new Date();
  const reportingMta = cleanHost(input.reportingMta) || 'localhost';
  const idDomain = cleanHost(input.messageIdDomain ?? '') || reportingMta;
  const queueId = cleanToken(input.queueId) || 'unknown';
  const arrival = validDate(input.arrivalDate) ?? now;
  const recipients = input.recipients.map(normaliseRecipient);
  const anyFailed = recipients.some((r) => r.action === 'failed');

  const original = originalHeaderLines(input.originalHeaders);
  const human = humanPart(reportingMta, recipients, anyFailed, original.truncated);
  const status = statusPart(reportingMta, queueId, input.envelopeId, arrival, recipients);
  const parts: Array<{ headers: string[]; body: string[] }> = [
    {
      headers: [
        'Content-Description: Notification',
        'Content-Type: text/plain; charset=us-ascii',
        'Content-Transfer-Encoding: 7bit',
      ],
      body: human,
    },
    {
      headers: [
        'Content-Description: Delivery report',
        'Content-Type: message/delivery-status',
        'Content-Transfer-Encoding: 7bit',
      ],
      body: status,
    },
    {
      headers: [
        'Content-Description: ' + (anyFailed ? 'Undelivered Message Headers' : 'Delayed Message Headers'),
        'Content-Type: text/rfc822-headers',
        'Content-Transfer-Encoding: 7bit',
      ],
      body: original.lines,
    },
  ];

  const content = parts.map((p) => p.body.join(CRLF)).join(CRLF);
  const boundary = pickBoundary(content);

  const out: string[] = [
    ...field('From', `Mail Delivery System <MAILER-DAEMON@${reportingMta}>`),
    ...field('To', `<${sender}>`),
    ...field('Subject', anyFailed ? 'Undelivered Mail Returned to Sender' : 'Delayed Mail (still being retried)'),
    ...field('Date', rfc5322Date(now)),
    ...field('Message-ID', `<${now.getTime().toString(36)}.${queueId}.${randomBytes(6).toString('hex')}@${idDomain}>`),
    ...field('Auto-Submitted', 'auto-replied'),
    ...field('MIME-Version', '1.0'),
    ...field('Content-Type', `multipart/report; report-type=delivery-status; boundary="${boundary}"`),
    '',
    'This is a MIME-encapsulated message.',
    '',
  ];
  for (const p of parts) {
    // The CRLF before each delimiter belongs to the delimiter (RFC 2046 §5.1.1),
    // so each body still ends in a line break of its own.
    out.push(`--${boundary}`, ...p.headers, '', ...p.body, '');
  }
  out.push(`--${boundary}--`, '');

  const wire = out.join(CRLF);
  assertWireSafe(wire);
  return Buffer.from(wire, 'latin1');
}

type CleanRecipient = {
  address: string;
  originalRecipient: string | undefined; // already 'type; address'
  action: 'failed' | 'delayed';
  status: string;
  remoteMta: string | undefined;
  diagnostic: string | undefined;
  lastAttempt: Date | undefined;
  willRetryUntil: Date | undefined;
};

function normaliseRecipient(r: DsnRecipient): CleanRecipient {
  const action = r.action === 'delayed' ? 'delayed' : 'failed';
  // A status that is not a well-formed enhanced code (RFC 3463) must not stop
  // the report: fall back to the generic code of the action's class.
  const status = /^[245]\.\d{1,3}\.\d{1,3}$/.test(r.status) ? r.status : action === 'delayed' ? '4.0.0' : '5.0.0';
  const diagnostic = r.diagnostic === undefined ? '' : cleanText(r.diagnostic, MAX_DIAGNOSTIC);
  const remoteMta = r.remoteMta === undefined ? '' : cleanHost(r.remoteMta);
  return {
    address: cleanAddress(r.address) || 'unknown',
    originalRecipient: r.originalRecipient === undefined ? undefined : originalRecipientValue(r.originalRecipient),
    action,
    status,
    remoteMta: remoteMta || undefined,
    diagnostic: diagnostic || undefined,
    lastAttempt: validDate(r.lastAttempt),
    willRetryUntil: action === 'delayed' ? validDate(r.willRetryUntil) : undefined,
  };
}

/** ORCPT is 'addr-type;address'; a bare address is taken as rfc822. */
function originalRecipientValue(raw: string): string | undefined {
  const m = /^\s*([A-Za-z0-9-]+)\s*;(.*)$/s.exec(raw);
  const type = m?.[1] !== undefined ? m[1].toLowerCase() : 'rfc822';
  const addr = cleanAddress(m?.[2] !== undefined ? m[2] : raw);
  return addr ? `${type}; ${addr}` : undefined;
}

function humanPart(mta: string, rcpts: CleanRecipient[], anyFailed: boolean, truncated: boolean): string[] {
  const paras: string[] = [`This is the mail system at host ${mta}.`];
  if (anyFailed) {
    paras.push(
      "I'm sorry to have to inform you that your message could not be delivered to one or more recipients. " +
        'The headers of your message are attached below; its body is not returned.',
    );
  } else {
    paras.push(
      '####### THIS IS A WARNING ONLY. YOU DO NOT NEED TO RESEND YOUR MESSAGE. #######',
      'Your message could not be delivered yet to the recipients below. ' +
        'The mail system will keep trying until the time shown.',
    );
  }
  for (const r of rcpts) {
    let s = `<${r.address}>: `;
    s += r.action === 'delayed' ? 'delivery temporarily deferred; ' : 'delivery failed; ';
    if (r.remoteMta !== undefined) s += `host ${r.remoteMta} said: `;
    s += r.diagnostic ?? `status ${r.status}`;
    if (r.willRetryUntil !== undefined) s += ` (will retry until ${rfc5322Date(r.willRetryUntil)})`;
    paras.push(s);
  }
  if (truncated) {
    paras.push(`The original headers were longer than ${MAX_ORIGINAL_HEADERS} bytes and have been cut.`);
  }
  const lines: string[] = [];
  for (const p of paras) lines.push('', ...wrap(p, TEXT_WIDTH));
  return lines.slice(1);
}

function statusPart(
  mta: string,
  queueId: string,
  envid: string | undefined,
  arrival: Date,
  rcpts: CleanRecipient[],
): string[] {
  const lines: string[] = [...field('Reporting-MTA', `dns; ${mta}`), ...field('X-Moat-Queue-ID', queueId)];
  const env = envid === undefined ? '' : cleanText(envid, 100);
  if (env) lines.push(...field('Original-Envelope-Id', env));
  lines.push(...field('Arrival-Date', rfc5322Date(arrival)));
  for (const r of rcpts) {
    lines.push('');
    if (r.originalRecipient !== undefined) lines.push(...field('Original-Recipient', r.originalRecipient));
    lines.push(...field('Final-Recipient', `rfc822; ${r.address}`));
    lines.push(...field('Action', r.action));
    lines.push(...field('Status', r.status));
    if (r.remoteMta !== undefined) lines.push(...field('Remote-MTA', `dns; ${r.remoteMta}`));
    if (r.diagnostic !== undefined) lines.push(...field('Diagnostic-Code', `smtp; ${r.diagnostic}`));
    if (r.lastAttempt !== undefined) lines.push(...field('Last-Attempt-Date', rfc5322Date(r.lastAttempt)));
    if (r.willRetryUntil !== undefined) lines.push(...field('Will-Retry-Until', rfc5322Date(r.willRetryUntil)));
  }
  return lines;
}

/**
 * The original header block as safe lines: at most MAX_ORIGINAL_HEADERS octets
 * (CRLFs included), cut at a line boundary; CR, LF and CRLF all end a line;
 * bytes above 0x7f and control characters other than TAB become '?'; blank
 * lines (which would end the header block early) are dropped; long lines are
 * folded so that every continuation starts with whitespace.
 */
function originalHeaderLines(buf: Buffer): { lines: string[]; truncated: boolean } {
  const lines: string[] = [];
  let used = 0;
  let i = 0;
  while (i < buf.length) {
    const room = MAX_ORIGINAL_HEADERS - used;
    // Scan no further than could still fit: bounded work for huge input.
    const stop = Math.min(buf.length, i + room);
    let end = i;
    while (end < stop && buf[end] !== 0x0a && buf[end] !== 0x0d) end++;
    if (end === stop && stop < buf.length && buf[end] !== 0x0a && buf[end] !== 0x0d) {
      return { lines, truncated: true }; // this line alone does not fit any more
    }
    const text = asciiOnly(buf.subarray(i, end));
    i = buf[end] === 0x0d && buf[end + 1] === 0x0a ? end + 2 : end + 1;
    if (text.trim() === '') continue;
    const folded = fold(text, MAX_LINE, MAX_LINE);
    const size = folded.reduce((n, l) => n + l.length + 2, 0);
    if (size > room) return { lines, truncated: true };
    lines.push(...folded);
    used += size;
  }
  return { lines, truncated: false };
}

function asciiOnly(raw: Buffer): string {
  let s = '';
  for (const b of raw) s += b === 0x09 || (b >= 0x20 && b < 0x7f) ? String.fromCharCode(b) : '?';
  return s;
}

/**
 * Folds one logical header line into physical lines. Breaks before a space or
 * tab so each continuation begins with whitespace; prefers lines up to `soft`,
 * never exceeds `hard`. With no whitespace to break at, it cuts and starts the
 * continuation with a space (changes the value by one space, never its meaning
 * as a header).
 */
function fold(line: string, soft: number, hard: number): string[] {
  const out: string[] = [];
  // Trailing whitespace would leave a whitespace-only continuation, which some
  // parsers take for the end of the header block; runs of whitespace are
  // collapsed so every break leaves text on both sides.
  let rest = line.trimEnd();
  if (rest.length > soft) rest = rest.replace(/[ \t]+/g, ' ');
  while (rest.length > soft) {
    let at = lastWsp(rest, soft);
    if (at <= 0) at = firstWsp(rest, soft + 1, hard);
    if (at > 0 && rest.slice(0, at).trim() !== '') {
      out.push(rest.slice(0, at));
      rest = rest.slice(at);
    } else if (rest.length > hard) {
      out.push(rest.slice(0, hard));
      rest = ' ' + rest.slice(hard);
    } else {
      break;
    }
  }
  out.push(rest);
  return out;
}

/** Index of the last space/tab in rest[1..limit], or -1. */
function lastWsp(rest: string, limit: number): number {
  for (let k = Math.min(limit, rest.length - 1); k > 0; k--) {
    const c = rest.charCodeAt(k);
    if (c === 0x20 || c === 0x09) return k;
  }
  return -1;
}

/** Index of the first space/tab in rest[from..limit], or -1. */
function firstWsp(rest: string, from: number, limit: number): number {
  for (let k = from; k <= Math.min(limit, rest.length - 1); k++) {
    const c = rest.charCodeAt(k);
    if (c === 0x20 || c === 0x09) return k;
  }
  return -1;
}

/** A header field, folded. The value must already be clean. */
function field(name: string, value: string): string[] {
  return fold(`${name}: ${value}`, SOFT_LINE, MAX_LINE);
}

/** Word-wraps a paragraph; words longer than the width are split. */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let cur = '';
  for (let word of text.split(' ')) {
    if (word === '') continue;
    while (word.length > width) {
      if (cur) lines.push(cur);
      cur = '';
      lines.push(word.slice(0, width));
      word = word.slice(width);
    }
    if (cur === '') cur = word;
    else if (cur.length + 1 + word.length <= width) cur += ' ' + word;
    else {
      lines.push(cur);
      cur = word;
    }
  }
  if (cur) lines.push(cur);
  return lines;
}

/**
 * Free text from outside (a remote reply, an ENVID): every control character
 * (CR and LF included) becomes a space, anything outside printable ASCII
 * becomes '?', whitespace runs collapse, length is capped.
 */
function cleanText(s: string, max: number): string {
  return s
    .replace(/[\u0000-\u001f\u007f]/g, ' ')
    .replace(/[^\u0020-\u007e]/gu, '?')
    .replace(/ +/g, ' ')
    .trim()
    .slice(0, max)
    .trim();
}

/** An address: clean text without angle brackets or surrounding whitespace. */
function cleanAddress(s: string): string {
  return cleanText(s.replace(/[<>]/g, ''), MAX_ADDRESS);
}

/** A host name or address literal: only the characters those can contain. */
function cleanHost(s: string): string {
  return s.replace(/[^A-Za-z0-9.\-:[\]]/g, '').slice(0, 255);
}

/** A queue id: only atext-safe characters, so it can sit inside a Message-ID. */
function cleanToken(s: string): string {
  return s.replace(/[^A-Za-z0-9._-]/g, '').slice(0, 64);
}

function validDate(d: Date | undefined): Date | undefined {
  return d instanceof Date && !Number.isNaN(d.getTime()) ? d : undefined;
}

/** 'Thu, 01 Jan 1970 00:00:00 +0000' (RFC 5322 §3.3), always in UTC. */
function rfc5322Date(d: Date): string {
  return d.toUTCString().replace(/GMT$/, '+0000');
}

/** A boundary (RFC 2046 §5.1.1) that appears nowhere in the content. */
function pickBoundary(content: string): string {
  for (;;) {
    const b = `=_moat_dsn_${randomBytes(12).toString('hex')}`;
    if (!content.includes(b)) return b;
  }
}

/** Last line of defence: the construction above already guarantees this. */
function assertWireSafe(wire: string): void {
  if (/[^\t\r\n\u0020-\u007e]/.test(wire)) throw new Error('buildDsn: non-ASCII byte in report');
  if (/\r(?!\n)|(?<!\r)\n/.test(wire)) throw new Error('buildDsn: bare CR or LF in report');
  for (const line of wire.split(CRLF)) {
    if (line.length > MAX_LINE) throw new Error('buildDsn: line over 998 octets in report');
  }
}
