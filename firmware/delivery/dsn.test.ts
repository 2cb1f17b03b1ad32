// Tests for dsn.ts: the report is parsed twice, by mailparser and by a small
// hand parser of the raw bytes, and checked for structure, fields, line
// discipline, sanitising of outside values and the cap on original headers.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { simpleParser } from 'mailparser';
import { buildDsn, MAX_ORIGINAL_HEADERS, type DsnInput } from './dsn.ts';

const NOW = new Date(Date.UTC(2024, 0, 2, 3, 4, 5));
const ARRIVAL = new Date(Date.UTC(2024, 0, 1, 22, 0, 0));
const LAST = new Date(Date.UTC(2024, 0, 2, 3, 0, 0));
const UNTIL = new Date(Date.UTC(2024, 0, 6, 22, 0, 0));
const ORIGINAL =
  'Received: from client.sender.example ([192.0.2.7])\r\n' +
  '\tby mx.moat.example with ESMTP id Q1A2B3\r\n' +
  'From: Alice <alice@sender.example>\r\n' +
  'To: bob@example.com, carol@example.org\r\n' +
  'Subject: quarterly numbers\r\n' +
  'Message-ID: <orig-1@sender.example>';

function bounceInput(over: Partial<DsnInput> = {}): DsnInput {
  return {
    reportingMta: 'mx.moat.example',
    queueId: 'Q1A2B3',
    sender: 'alice@sender.example',
    arrivalDate: ARRIVAL,
    envelopeId: 'ENV-77',
    now: NOW,
    recipients: [
      {
        address: 'bob@example.com',
        originalRecipient: 'rfc822;bob@example.com',
        action: 'failed',
        status: '5.1.1',
        remoteMta: 'mx.example.com',
        diagnostic: '550 5.1.1 <bob@example.com>: user unknown',
        lastAttempt: LAST,
      },
      {
        address: 'carol@example.org',
        action: 'failed',
        status: '5.2.2',
        remoteMta: 'mx.example.org',
        diagnostic: '552 5.2.2 mailbox full',
      },
    ],
    originalHeaders: Buffer.from(ORIGINAL, 'latin1'),
    ...over,
  };
}

function delayInput(): DsnInput {
  return bounceInput({
    recipients: [
      {
        address: 'dave@slow.example',
        action: 'delayed',
        status: '4.4.1',
        remoteMta: 'mx.slow.example',
        diagnostic: '421 4.4.1 try again later',
        lastAttempt: LAST,
        willRetryUntil: UNTIL,
      },
    ],
  });
}

type Part = { headers: Map<string, string>; body: string };
type Raw = { headers: Map<string, string>; headerLines: string[]; boundary: string; preamble: string; parts: Part[]; epilogue: string };

/** Header block to a map of lower-cased name -> unfolded value; throws on a line that is neither field nor continuation. */
function parseHeaderBlock(block: string): { map: Map<string, string>; lines: string[] } {
  const map = new Map<string, string>();
  const lines = block.split('\r\n');
  let last = '';
  for (const line of lines) {
    if (/^[ \t]/.test(line)) {
      assert.notEqual(last, '', `continuation without a field: ${JSON.stringify(line)}`);
      map.set(last, `${map.get(last) ?? ''}${line}`);
      continue;
    }
    const m = /^([!-9;-~]+):[ \t]*(.*)$/.exec(line);
    assert.ok(m, `not a header line: ${JSON.stringify(line)}`);
    last = m[1]!.toLowerCase();
    assert.equal(map.has(last), false, `duplicate field ${last}`);
    map.set(last, m[2]!);
  }
  return { map, lines };
}

/** A hand parser of the raw report: top headers, boundary, parts in order. */
function parseRaw(buf: Buffer): Raw {
  const s = buf.toString('latin1');
  const split = s.indexOf('\r\n\r\n');
  assert.ok(split > 0, 'no end of header block');
  const top = parseHeaderBlock(s.slice(0, split));
  const ct = top.map.get('content-type') ?? '';
  const bm = /boundary="([^"]+)"/.exec(ct);
  assert.ok(bm, `no boundary in ${ct}`);
  const boundary = bm[1]!;
  const body = s.slice(split + 4);
  const closeAt = body.indexOf(`\r\n--${boundary}--\r\n`);
  assert.ok(closeAt >= 0, 'no close delimiter');
  const epilogue = body.slice(closeAt + `\r\n--${boundary}--\r\n`.length);
  const chunks = ('\r\n' + body.slice(0, closeAt)).split(`\r\n--${boundary}\r\n`);
  const preamble = chunks.shift()!;
  const parts = chunks.map((c) => {
    const at = c.indexOf('\r\n\r\n');
    assert.ok(at > 0, 'part without header block');
    return { headers: parseHeaderBlock(c.slice(0, at)).map, body: c.slice(at + 4) };
  });
  return { headers: top.map, headerLines: top.lines, boundary, preamble, parts, epilogue };
}

/** message/delivery-status body to blocks of fields (first: per-message). */
function statusBlocks(body: string): Array<Map<string, string>> {
  const text = body.replace(/\r\n$/, '');
  return text.split('\r\n\r\n').map((b) => parseHeaderBlock(b).map);
}

function unwrap(text: string): string {
  return text.replace(/\r\n/g, ' ').replace(/ +/g, ' ');
}

function assertWireDiscipline(buf: Buffer): void {
  for (let i = 0; i < buf.length; i++) {
    const b = buf[i]!;
    assert.ok(b < 0x80, `byte 0x${b.toString(16)} above 0x7f at ${i}`);
    if (b === 0x0a) assert.equal(buf[i - 1], 0x0d, `bare LF at ${i}`);
    if (b === 0x0d) assert.equal(buf[i + 1], 0x0a, `bare CR at ${i}`);
  }
  const lines = buf.toString('latin1').split('\r\n');
  const longest = Math.max(...lines.map((l) => l.length));
  assert.ok(longest <= 998, `line of ${longest} octets`);
}

test('mailparser sees a multipart/report of delivery-status with the three parts in order', async () => {
  const mail = await simpleParser(buildDsn(bounceInput()), { keepDeliveryStatus: true });
  const ct = mail.headers.get('content-type') as { value: string; params: Record<string, string> };
  assert.equal(ct.value, 'multipart/report');
  assert.equal(ct.params['report-type'], 'delivery-status');
  assert.equal(mail.subject, 'Undelivered Mail Returned to Sender');
  assert.equal(mail.from?.value[0]?.address, 'MAILER-DAEMON@mx.moat.example');
  assert.equal(mail.from?.value[0]?.name, 'Mail Delivery System');
  const to = Array.isArray(mail.to) ? mail.to[0] : mail.to;
  assert.equal(to?.value[0]?.address, 'alice@sender.example');
  assert.equal(mail.headers.get('auto-submitted'), 'auto-replied');
  assert.equal(mail.headers.get('mime-version'), '1.0');
  assert.match(mail.messageId ?? '', /^<[^<>@\s]+@mx\.moat\.example>$/);
  assert.equal(mail.date?.getTime(), NOW.getTime());
  assert.match(mail.text ?? '', /bob@example\.com/);
  assert.deepEqual(
    mail.attachments.map((a) => a.contentType),
    ['message/delivery-status', 'text/rfc822-headers'],
  );
  const status = mail.attachments[0]!.content.toString('latin1');
  assert.match(status, /^Final-Recipient: rfc822; carol@example\.org$/m);
  const headers = mail.attachments[1]!.content.toString('latin1');
  assert.match(headers, /^Subject: quarterly numbers$/m);
});

test('raw structure: top headers, one boundary, three parts of the right types, and nothing after', () => {
  const buf = buildDsn(bounceInput());
  const raw = parseRaw(buf);
  assert.equal(raw.headers.get('from'), 'Mail Delivery System <MAILER-DAEMON@mx.moat.example>');
  assert.equal(raw.headers.get('to'), '<alice@sender.example>');
  assert.equal(raw.headers.get('date'), 'Tue, 02 Jan 2024 03:04:05 +0000');
  assert.equal(raw.headers.get('auto-submitted'), 'auto-replied');
  assert.match(raw.headers.get('content-type')!, /^multipart\/report; report-type=delivery-status;\s*boundary="[^"]+"$/);
  assert.deepEqual(
    raw.parts.map((p) => p.headers.get('content-type')),
    ['text/plain; charset=us-ascii', 'message/delivery-status', 'text/rfc822-headers'],
  );
  assert.equal(raw.epilogue, '');
  // The boundary occurs only as the three delimiters, the close delimiter and the parameter.
  const text = buf.toString('latin1');
  assert.equal(text.split(raw.boundary).length - 1, 5);
  for (const p of raw.parts) assert.equal(p.body.includes(raw.boundary), false);
  // Each body ends in its own line break.
  for (const p of raw.parts) assert.ok(p.body.endsWith('\r\n'), 'part body without final CRLF');
});

test('delivery-status has the per-message fields and one block per recipient', () => {
  const raw = parseRaw(buildDsn(bounceInput()));
  const blocks = statusBlocks(raw.parts[1]!.body);
  assert.equal(blocks.length, 3);
  const [msg, bob, carol] = blocks as [Map<string, string>, Map<string, string>, Map<string, string>];
  assert.deepEqual(Object.fromEntries(msg), {
    'reporting-mta': 'dns; mx.moat.example',
    'x-moat-queue-id': 'Q1A2B3',
    'original-envelope-id': 'ENV-77',
    'arrival-date': 'Mon, 01 Jan 2024 22:00:00 +0000',
  });
  assert.deepEqual(Object.fromEntries(bob), {
    'original-recipient': 'rfc822; bob@example.com',
    'final-recipient': 'rfc822; bob@example.com',
    action: 'failed',
    status: '5.1.1',
    'remote-mta': 'dns; mx.example.com',
    'diagnostic-code': 'smtp; 550 5.1.1 <bob@example.com>: user unknown',
    'last-attempt-date': 'Tue, 02 Jan 2024 03:00:00 +0000',
  });
  assert.deepEqual(Object.fromEntries(carol), {
    'final-recipient': 'rfc822; carol@example.org',
    action: 'failed',
    status: '5.2.2',
    'remote-mta': 'dns; mx.example.org',
    'diagnostic-code': 'smtp; 552 5.2.2 mailbox full',
  });
});

test('per-message block leaves out Original-Envelope-Id when there is no ENVID', () => {
  const raw = parseRaw(buildDsn(bounceInput({ envelopeId: undefined })));
  const msg = statusBlocks(raw.parts[1]!.body)[0]!;
  assert.equal(msg.has('original-envelope-id'), false);
  assert.equal(msg.get('reporting-mta'), 'dns; mx.moat.example');
});

test('the human part names each recipient, the remote host and the remote reply', () => {
  const raw = parseRaw(buildDsn(bounceInput()));
  const human = unwrap(raw.parts[0]!.body);
  assert.ok(human.includes('<bob@example.com>: delivery failed; host mx.example.com said: 550 5.1.1 <bob@example.com>: user unknown'), human);
  assert.ok(human.includes('<carol@example.org>: delivery failed; host mx.example.org said: 552 5.2.2 mailbox full'), human);
  assert.ok(human.includes('mx.moat.example'), human);
  for (const line of raw.parts[0]!.body.split('\r\n')) assert.ok(line.length <= 78, `human line of ${line.length}`);
});

test('the original headers appear unchanged in part 3', () => {
  const raw = parseRaw(buildDsn(bounceInput()));
  assert.equal(raw.parts[2]!.body, ORIGINAL + '\r\n');
});

test('CRLF only and no line over 998, even with long outside values', () => {
  const noSpaces = 'x'.repeat(5000);
  const words = Array.from({ length: 900 }, (_, i) => `w${i}`).join(' ');
  const buf = buildDsn(
    bounceInput({
      recipients: [
        { address: 'bob@example.com', action: 'failed', status: '5.1.1', diagnostic: `550 ${noSpaces}` },
        { address: 'carol@example.org', action: 'failed', status: '5.2.2', diagnostic: `552 ${words}` },
      ],
      originalHeaders: Buffer.from(`Subject: short\nX-Long: ${noSpaces}\nX-Words: ${words}\r\nTo: bob@example.com`, 'latin1'),
    }),
  );
  assertWireDiscipline(buf);
  const raw = parseRaw(buf);
  // The long lines really were there and were folded, not dropped.
  const orig = parseHeaderBlock(raw.parts[2]!.body.replace(/\r\n$/, '')).map;
  assert.equal(orig.get('x-words'), words);
  assert.equal(orig.get('x-long')!.replace(/ /g, ''), noSpaces);
  assert.equal(orig.get('to'), 'bob@example.com');
  const blocks = statusBlocks(raw.parts[1]!.body);
  assert.ok(blocks[2]!.get('diagnostic-code')!.startsWith('smtp; 552 w0 w1 w2'));
  assert.ok(blocks[1]!.get('diagnostic-code')!.replace(/ /g, '').startsWith('smtp;550xxxxxxxx'));
});

test('a header injection attempt in the diagnostic does not create a header', async () => {
  const input = bounceInput({
    recipients: [
      { address: 'bob@example.com', action: 'failed', status: '5.1.1', diagnostic: '550 x\r\nBcc: evil@x' },
    ],
  });
  const buf = buildDsn(input);
  assertWireDiscipline(buf);
  const text = buf.toString('latin1');
  assert.doesNotMatch(text, /^Bcc:/im);
  const raw = parseRaw(buf);
  assert.equal(raw.headers.has('bcc'), false);
  const rcpt = statusBlocks(raw.parts[1]!.body)[1]!;
  assert.equal(rcpt.get('diagnostic-code'), 'smtp; 550 x Bcc: evil@x');
  assert.equal(rcpt.has('bcc'), false);
  const mail = await simpleParser(buf);
  assert.equal(mail.bcc, undefined);
  assert.equal(mail.headers.has('bcc'), false);
});

test('CR, LF and control characters in addresses and the sender cannot start a header', () => {
  const buf = buildDsn(
    bounceInput({
      sender: 'alice@sender.example>\r\nBcc: evil@x',
      recipients: [
        {
          address: 'bob@example.com\nX-Injected: 1',
          originalRecipient: 'rfc822;bob@example.com\rX-Injected: 2',
          action: 'failed',
          status: '5.1.1',
          remoteMta: 'mx.example.com\r\nX-Injected: 3',
          diagnostic: '550 \u0000\u001b[31mred\u00e9',
        },
      ],
    }),
  );
  assertWireDiscipline(buf);
  const text = buf.toString('latin1');
  assert.doesNotMatch(text, /^(Bcc|X-Injected):/im);
  const raw = parseRaw(buf);
  assert.equal(raw.headers.get('to'), '<alice@sender.example Bcc: evil@x>');
  const rcpt = statusBlocks(raw.parts[1]!.body)[1]!;
  assert.equal(rcpt.get('final-recipient'), 'rfc822; bob@example.com X-Injected: 1');
  assert.equal(rcpt.get('original-recipient'), 'rfc822; bob@example.com X-Injected: 2');
  // A host keeps only host characters (':' for IPv6 literals); CR, LF and spaces go.
  assert.equal(rcpt.get('remote-mta'), 'dns; mx.example.comX-Injected:3');
  assert.equal(rcpt.get('diagnostic-code'), 'smtp; 550 [31mred?');
});

test('8-bit bytes, NUL and bare LF/CR in the original headers are sanitised', () => {
  const orig = Buffer.concat([
    Buffer.from('Subject: caf', 'latin1'),
    Buffer.from([0xc3, 0xa9]), // UTF-8 e-acute
    Buffer.from(' au lait\nFrom: b', 'latin1'),
    Buffer.from([0xff, 0x00]),
    Buffer.from('x@example.com\rTo: bob@example.com\n\n\r\nX-After-Blank: yes\r\n', 'latin1'),
  ]);
  const buf = buildDsn(bounceInput({ originalHeaders: orig }));
  assertWireDiscipline(buf);
  const raw = parseRaw(buf);
  assert.equal(
    raw.parts[2]!.body,
    'Subject: caf?? au lait\r\nFrom: b??x@example.com\r\nTo: bob@example.com\r\nX-After-Blank: yes\r\n',
  );
});

test('a delay report says delayed, gives Will-Retry-Until and does not claim a bounce', async () => {
  const buf = buildDsn(delayInput());
  assertWireDiscipline(buf);
  const raw = parseRaw(buf);
  assert.equal(raw.headers.get('subject'), 'Delayed Mail (still being retried)');
  const blocks = statusBlocks(raw.parts[1]!.body);
  assert.equal(blocks.length, 2);
  const rcpt = blocks[1]!;
  assert.equal(rcpt.get('action'), 'delayed');
  assert.equal(rcpt.get('status'), '4.4.1');
  assert.equal(rcpt.get('will-retry-until'), 'Sat, 06 Jan 2024 22:00:00 +0000');
  assert.equal(rcpt.get('diagnostic-code'), 'smtp; 421 4.4.1 try again later');
  const human = unwrap(raw.parts[0]!.body);
  assert.match(human, /WARNING ONLY/);
  assert.match(human, /<dave@slow\.example>: delivery temporarily deferred; host mx\.slow\.example said: 421 4\.4\.1 try again later \(will retry until Sat, 06 Jan 2024 22:00:00 \+0000\)/);
  assert.doesNotMatch(human, /could not be delivered to one or more/);
  const mail = await simpleParser(buf);
  assert.equal(mail.subject, 'Delayed Mail (still being retried)');
});

test('a failed recipient never gets Will-Retry-Until, and a mixed report is a bounce', () => {
  const input = bounceInput();
  input.recipients[0]!.willRetryUntil = UNTIL;
  input.recipients.push(delayInput().recipients[0]!);
  const raw = parseRaw(buildDsn(input));
  assert.equal(raw.headers.get('subject'), 'Undelivered Mail Returned to Sender');
  const blocks = statusBlocks(raw.parts[1]!.body);
  assert.deepEqual(
    blocks.slice(1).map((b) => [b.get('action'), b.has('will-retry-until')]),
    [['failed', false], ['failed', false], ['delayed', true]],
  );
});

test('200 KB of original headers is capped at 64 KiB on a line boundary', () => {
  const lines: string[] = [];
  for (let size = 0, i = 0; size < 200 * 1024; i++) {
    const line = `X-Filler-${String(i).padStart(5, '0')}: ${'v'.repeat(60)} end`;
    lines.push(line);
    size += line.length + 2;
  }
  const orig = Buffer.from(lines.join('\r\n'), 'latin1');
  assert.ok(orig.length >= 200 * 1024);
  const buf = buildDsn(bounceInput({ originalHeaders: orig }));
  assertWireDiscipline(buf);
  const raw = parseRaw(buf);
  const part3 = raw.parts[2]!.body;
  assert.ok(part3.length <= MAX_ORIGINAL_HEADERS, `part 3 is ${part3.length} bytes`);
  assert.ok(part3.length > MAX_ORIGINAL_HEADERS - 100, `part 3 cut too early: ${part3.length}`);
  const got = part3.replace(/\r\n$/, '').split('\r\n');
  // A prefix of whole original lines, in order, none cut in the middle.
  assert.deepEqual(got, lines.slice(0, got.length));
  assert.ok(buf.length < 80 * 1024, `report is ${buf.length} bytes`);
  assert.match(unwrap(raw.parts[0]!.body), /original headers were longer than 65536 bytes/);
});

test('an original header line with no line break at all is dropped whole, not cut mid-line', () => {
  const orig = Buffer.from(`Subject: ok\r\nX-Huge: ${'y'.repeat(300 * 1024)}`, 'latin1');
  const raw = parseRaw(buildDsn(bounceInput({ originalHeaders: orig })));
  assert.equal(raw.parts[2]!.body, 'Subject: ok\r\n');
});

test('an original header block just under the cap is kept whole, without a truncation note', () => {
  const line = `X-Filler: ${'z'.repeat(88)}`; // 98 octets + CRLF = 100
  const orig = Buffer.from(Array.from({ length: 655 }, () => line).join('\r\n'), 'latin1');
  const raw = parseRaw(buildDsn(bounceInput({ originalHeaders: orig })));
  assert.equal(raw.parts[2]!.body.split('\r\n').length - 1, 655);
  assert.doesNotMatch(unwrap(raw.parts[0]!.body), /were longer than/);
});

test('each report gets its own boundary and Message-ID', () => {
  const a = parseRaw(buildDsn(bounceInput()));
  const b = parseRaw(buildDsn(bounceInput()));
  assert.notEqual(a.boundary, b.boundary);
  assert.notEqual(a.headers.get('message-id'), b.headers.get('message-id'));
  const c = parseRaw(buildDsn(bounceInput({ messageIdDomain: 'ids.moat.example' })));
  assert.match(c.headers.get('message-id')!, /@ids\.moat\.example>$/);
});

test('a malformed status falls back to the generic code of its action', () => {
  const input = delayInput();
  input.recipients.push({ address: 'eve@example.net', action: 'failed', status: '5.1.1\r\nX: y' });
  input.recipients[0]!.status = 'later';
  const blocks = statusBlocks(parseRaw(buildDsn(input)).parts[1]!.body);
  assert.deepEqual(blocks.slice(1).map((b) => b.get('status')), ['4.0.0', '5.0.0']);
});

test('refuses to report to the null sender or with no recipients', () => {
  assert.throws(() => buildDsn(bounceInput({ sender: '' })), /null sender/);
  assert.throws(() => buildDsn(bounceInput({ sender: '<>' })), /null sender/);
  assert.throws(() => buildDsn(bounceInput({ sender: 'MAILER-DAEMON@other.example' })), /mailer-daemon/);
  assert.throws(() => buildDsn(bounceInput({ recipients: [] })), /at least one recipient/);
});
