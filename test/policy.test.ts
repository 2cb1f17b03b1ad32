// The anti-abuse policy through the wire: real SMTP on loopback, a real DNS server on
// loopback (DNSBL A records, SPF TXT, DKIM keys, DMARC records), source addresses
// 127.0.0.2, 127.0.0.3 … standing in for distinct clients. Each scenario is a golden
// transcript (STYLE 13): a config, the client's lines and the exact replies, diffed.
//
// Transcript lines: "S: reply" (the first line of a reply, continuation dash made a
// space), "C: command" (sent, then the next "S:" is its reply), "M: name" (a message
// from `messages`, sent after DATA's 354 with the final dot), "-- closed" (the server
// closed the connection).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { dkimSign } from 'mailauth';
import { RawSmtp } from './helpers/smtp-client.ts';
import { withRelay } from './helpers/moat.ts';
import { startDns, type Zone } from './helpers/dns.ts';
import type { ConfigInput } from '../firmware/config/schema.ts';

const GTUBE = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X';

const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const dkimPublic = publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
const dkimPrivate = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();

const zone: Zone = {
  // DNSBL: 127.0.0.2 listed, 127.0.0.4 answered with a code that does not count
  '2.0.0.127.bl.test': { A: ['127.0.0.2'] },
  '4.0.0.127.bl.test': { A: ['127.255.255.254'] },
  '20.0.0.127.tag.test': { A: ['127.0.0.3'] },
  // SPF
  'spf-fail.test': { TXT: ['v=spf1 ip4:192.0.2.1 -all'] },
  'spf-pass.test': { TXT: ['v=spf1 ip4:127.0.0.0/8 -all'] },
  'example.org': { TXT: ['v=spf1 ip4:127.0.0.8 -all'] },
  // DKIM and DMARC
  'sel._domainkey.signer.test': { TXT: [`v=DKIM1; k=rsa; p=${dkimPublic}`] },
  '_dmarc.signer.test': { TXT: ['v=DMARC1; p=reject'] },
  '_dmarc.dmarc.test': { TXT: ['v=DMARC1; p=reject'] },
  '_dmarc.lax.test': { TXT: ['v=DMARC1; p=none'] },
};

function message(from: string, body: string, extra = ''): string {
  return `From: <${from}>\r\nTo: <user@example.com>\r\nSubject: test\r\nDate: Sat, 28 Nov 2026 12:00:00 +0000\r\nMessage-ID: <t1@${from.split('@')[1]}>\r\n${extra}\r\n${body}\r\n`;
}

async function signed(msg: string, domain: string): Promise<string> {
  const r = await dkimSign(msg, { signatureData: [{ signingDomain: domain, selector: 'sel', privateKey: dkimPrivate }] } as never);
  assert.equal(r.errors.length, 0, JSON.stringify(r.errors));
  assert.match(r.signatures, /^DKIM-Signature: /);
  return r.signatures + msg;
}

type Messages = Record<string, string>;

/** Runs one client's side of a transcript from `from`; returns the transcript as it happened. */
async function play(port: number, from: string, script: string[], messages: Messages): Promise<string> {
  const out: string[] = [];
  const c = await RawSmtp.open(port, '127.0.0.1', from);
  const read = async () => {
    try {
      const r = await c.reply();
      out.push('S: ' + r.split('\r\n')[0]!.replace(/^(\d{3})-/, '$1 ').replace(/queued as [0-9A-F]+$/, 'queued as ID'));
    } catch {
      out.push('-- closed');
    }
  };
  try {
    for (const line of script) {
      if (line.startsWith('C: ')) {
        out.push(line);
        c.write(line.slice(3) + '\r\n');
      } else if (line.startsWith('M: ')) {
        out.push(line);
        const m = messages[line.slice(3)];
        assert.ok(m !== undefined, `no message ${line}`);
        c.write(m.replace(/^\./gm, '..') + '.\r\n');
      } else if (line.startsWith('S: ') || line === '-- closed') {
        if (out.at(-1) === '-- closed') break;
        await read();
      }
    }
  } finally {
    c.destroy();
  }
  return out.join('\n');
}

async function transcript(port: number, from: string, script: string[], messages: Messages = {}): Promise<void> {
  assert.equal(await play(port, from, script, messages), script.join('\n'));
}

const dnsFor = (server: string): ConfigInput['dns'] => ({ servers: [server], timeoutMs: 300 });

test('DNSBL: a listed client is refused at connect; an unlisted one, or one with an answer that does not count, is greeted', async () => {
  const dns = await startDns(zone);
  const policy: ConfigInput['policy'] = {
    chain: { connect: ['blocks', 'connection-limits', 'dnsbl'] },
    dnsbl: { zones: [{ zone: 'bl.test', weight: 1, answers: ['127.0.0.2-127.0.0.11'] }], threshold: 1 },
  };
  try {
    await withRelay({ policy, dns: dnsFor(dns.server) }, async ({ moat, sink }) => {
      await transcript(moat.port, '127.0.0.2', ['S: 554 5.7.1 Service unavailable; client address listed by bl.test', '-- closed']);
      await transcript(moat.port, '127.0.0.3', ['S: 220 mx.example.com ESMTP moat', 'C: QUIT', 'S: 221 2.0.0 Bye']);
      await transcript(moat.port, '127.0.0.4', ['S: 220 mx.example.com ESMTP moat', 'C: QUIT', 'S: 221 2.0.0 Bye']);
      assert.ok(dns.asked.includes('A 2.0.0.127.bl.test'));
      assert.deepEqual(sink.rcpts, [], 'nothing reached the internal server (the health probe may greet it)');
    });
  } finally {
    await dns.close();
  }
});

test('DNSBL: a blocklist that does not answer within dns.timeoutMs lets the client through', async () => {
  const dns = await startDns(zone, { silent: ['slow.test'] });
  const policy: ConfigInput['policy'] = { chain: { connect: ['dnsbl'] }, dnsbl: { zones: [{ zone: 'slow.test' }] } };
  try {
    await withRelay({ policy, dns: dnsFor(dns.server) }, async ({ moat, sink }) => {
      await transcript(
        moat.port,
        '127.0.0.5',
        ['S: 220 mx.example.com ESMTP moat', 'C: EHLO client.example.net', 'S: 250 mx.example.com Nice to meet you, [127.0.0.5]', 'C: MAIL FROM:<a@spf-pass.test>', 'S: 250 2.1.0 Accepted', 'C: RCPT TO:<user@example.com>', 'S: 250 2.1.5 Accepted', 'C: DATA', 'S: 354 End data with <CR><LF>.<CR><LF>', 'M: plain', 'S: 250 2.0.0 Ok: queued as ID'],
        { plain: message('a@spf-pass.test', 'hello') },
      );
      assert.ok(dns.asked.includes('A 5.0.0.127.slow.test'), 'the blocklist was asked');
      const [m] = await sink.waitFor(1);
      assert.match(m!.body.toString(), /hello/);
    });
  } finally {
    await dns.close();
  }
});

const GREET = (ip: string) => ['S: 220 mx.example.com ESMTP moat', 'C: EHLO client.example.net', `S: 250 mx.example.com Nice to meet you, [${ip}]`];
const SEND = (msg: string) => ['C: DATA', 'S: 354 End data with <CR><LF>.<CR><LF>', `M: ${msg}`];

test('MAIL FROM: SPF fail refused, SPF pass accepted, a forged local sender refused, an internal client may use a local domain', async () => {
  const dns = await startDns(zone);
  const policy: ConfigInput['policy'] = { chain: { mail: ['sender-domains', 'anti-spoofing', 'spf'] } };
  try {
    await withRelay({ policy, dns: dnsFor(dns.server), internal: { networks: ['127.0.0.9/32'] } }, async ({ moat }) => {
      await transcript(moat.port, '127.0.0.6', [
        ...GREET('127.0.0.6'),
        'C: MAIL FROM:<a@spf-fail.test>',
        'S: 550 5.7.23 SPF validation failed',
        'C: MAIL FROM:<a@spf-pass.test>',
        'S: 250 2.1.0 Accepted',
      ]);
      // example.com publishes no SPF, example.org's allows 127.0.0.8 only
      await transcript(moat.port, '127.0.0.7', [
        ...GREET('127.0.0.7'),
        'C: MAIL FROM:<ceo@example.com>',
        'S: 550 5.7.1 Sender address in a local domain is not accepted from outside',
        'C: MAIL FROM:<ceo@example.org>',
        'S: 550 5.7.1 Sender address in a local domain is not accepted from outside',
      ]);
      await transcript(moat.port, '127.0.0.8', [...GREET('127.0.0.8'), 'C: MAIL FROM:<ceo@example.org>', 'S: 250 2.1.0 Accepted']);
      await transcript(moat.port, '127.0.0.9', [...GREET('127.0.0.9'), 'C: MAIL FROM:<ceo@example.com>', 'S: 250 2.1.0 Accepted']);
    });
  } finally {
    await dns.close();
  }
});

test('SPF temperror (its DNS does not answer) is a 451, never a pass', async () => {
  const dns = await startDns(zone, { silent: ['slow.test'] });
  const policy: ConfigInput['policy'] = { chain: { mail: ['spf'] }, checkTimeoutMs: 2000 };
  try {
    await withRelay({ policy, dns: dnsFor(dns.server) }, async ({ moat }) => {
      await transcript(moat.port, '127.0.0.6', [...GREET('127.0.0.6'), 'C: MAIL FROM:<a@x.slow.test>', 'S: 451 4.7.24 SPF validation error, try again later']);
    });
  } finally {
    await dns.close();
  }
});

test('sender domain lists: a denied suffix is refused; an allowed one skips the sender checks but never opens the relay', async () => {
  const policy: ConfigInput['policy'] = { chain: { mail: ['sender-domains', 'anti-spoofing'] }, senders: { deny: ['spam.example'], allow: ['friend.test', 'example.com'] } };
  await withRelay({ policy }, async ({ moat, sink }) => {
    await transcript(moat.port, '127.0.0.2', [
      ...GREET('127.0.0.2'),
      'C: MAIL FROM:<x@mail.spam.example>',
      'S: 554 5.7.1 Sender domain refused by policy',
      'C: MAIL FROM:<x@friend.test>',
      'S: 250 2.1.0 Accepted',
      'C: RCPT TO:<someone@other.net>',
      'S: 554 5.7.1 Relay rejected for policy reasons',
      'C: RSET',
      'S: 250 2.0.0 Flushed',
      // allow-listed: anti-spoofing is skipped for this local domain
      'C: MAIL FROM:<x@example.com>',
      'S: 250 2.1.0 Accepted',
    ]);
    assert.deepEqual(sink.rcpts, [], 'nothing reached the internal server (the health probe may greet it)');
  });
});

test('HELO/EHLO: our own name, a bare IP, bad syntax and our address as a literal are refused; the client may try again', async () => {
  await withRelay({}, async ({ moat }) => {
    await transcript(moat.port, '127.0.0.2', [
      'S: 220 mx.example.com ESMTP moat',
      'C: EHLO mx.example.com',
      'S: 550 5.7.1 HELO/EHLO claims to be this host',
      'C: HELO example.org',
      'S: 550 5.7.1 HELO/EHLO claims to be this host',
      'C: EHLO 192.0.2.1',
      'S: 501 5.5.2 HELO/EHLO address literal must be in brackets',
      'C: EHLO nodots',
      'S: 501 5.5.2 Invalid HELO/EHLO host name',
      'C: EHLO [127.0.0.1]',
      'S: 550 5.7.1 HELO/EHLO claims to be this host',
      'C: MAIL FROM:<a@b.example>',
      'S: 503 5.5.1 Error: send HELO/EHLO first',
      'C: EHLO [127.0.0.2]',
      'S: 250 mx.example.com Nice to meet you, [127.0.0.2]',
    ]);
  });
});

test('DKIM: mail signed with mailauth verifies and arrives with its Authentication-Results; DMARC p=reject failures are refused', async () => {
  const dns = await startDns(zone);
  const policy: ConfigInput['policy'] = { chain: { data: ['authentication', 'gtube', 'spam-score'] } };
  const good = await signed(message('boss@signer.test', 'signed body'), 'signer.test');
  const messages = {
    good,
    // the body changed after signing
    tampered: good.replace('signed body', 'changed body'),
    // From: a domain with p=reject, no signature, SPF of the envelope domain passes but is not aligned
    forged: message('boss@dmarc.test', 'pay now'),
    lax: message('boss@lax.test', 'p=none'),
  };
  try {
    await withRelay({ policy, dns: dnsFor(dns.server) }, async ({ moat, sink }) => {
      await transcript(
        moat.port,
        '127.0.0.3',
        [
          ...GREET('127.0.0.3'),
          'C: MAIL FROM:<bounces@spf-pass.test>',
          'S: 250 2.1.0 Accepted',
          'C: RCPT TO:<user@example.com>',
          'S: 250 2.1.5 Accepted',
          ...SEND('good'),
          'S: 250 2.0.0 Ok: queued as ID',
          'C: MAIL FROM:<bounces@spf-pass.test>',
          'S: 250 2.1.0 Accepted',
          'C: RCPT TO:<user@example.com>',
          'S: 250 2.1.5 Accepted',
          ...SEND('tampered'),
          'S: 550 5.7.1 Message rejected by the DMARC policy of its author domain',
          'C: MAIL FROM:<bounces@spf-pass.test>',
          'S: 250 2.1.0 Accepted',
          'C: RCPT TO:<user@example.com>',
          'S: 250 2.1.5 Accepted',
          ...SEND('forged'),
          'S: 550 5.7.1 Message rejected by the DMARC policy of its author domain',
          'C: MAIL FROM:<bounces@spf-pass.test>',
          'S: 250 2.1.0 Accepted',
          'C: RCPT TO:<user@example.com>',
          'S: 250 2.1.5 Accepted',
          ...SEND('lax'),
          'S: 250 2.0.0 Ok: queued as ID',
        ],
        messages,
      );
      const got = await sink.waitFor(2);
      const first = got[0]!.body.toString('latin1');
      const head = first.slice(0, first.indexOf('\r\n\r\n'));
      assert.match(head, /^Received-SPF: pass/);
      assert.match(head, /^Authentication-Results: mx\.example\.com;/m);
      assert.match(head, /dkim=pass header\.i=@signer\.test header\.s=sel/);
      assert.match(head, /dmarc=pass [^;]*header\.from=signer\.test/);
      assert.ok(head.indexOf('Authentication-Results:') < head.indexOf('Received: from'), 'the added fields come first');
      assert.ok(first.endsWith('signed body\r\n'), 'the body is unchanged');
      assert.ok(first.includes(good.slice(0, 40)), 'the signature is passed on');
      const lax = got[1]!.body.toString('latin1');
      assert.match(lax, /dmarc=fail/);
      assert.match(lax, /^X-Spam-Flag: YES\r$/m, 'a DMARC failure under p=none counts toward the spam score (5 points)');
    });
  } finally {
    await dns.close();
  }
});

test('with dmarc.enforceReject off, a p=reject failure is delivered with a spam score instead', async () => {
  const dns = await startDns(zone);
  const policy: ConfigInput['policy'] = { chain: { data: ['authentication', 'spam-score'] }, dmarc: { enforceReject: false, failScore: 3 } };
  try {
    await withRelay({ policy, dns: dnsFor(dns.server) }, async ({ moat, sink }) => {
      await transcript(
        moat.port,
        '127.0.0.3',
        [...GREET('127.0.0.3'), 'C: MAIL FROM:<b@spf-pass.test>', 'S: 250 2.1.0 Accepted', 'C: RCPT TO:<user@example.com>', 'S: 250 2.1.5 Accepted', ...SEND('forged'), 'S: 250 2.0.0 Ok: queued as ID'],
        { forged: message('boss@dmarc.test', 'pay now') },
      );
      const [m] = await sink.waitFor(1);
      const text = m!.body.toString('latin1');
      assert.match(text, /^X-Spam-Score: 3\.0\r$/m);
      assert.match(text, /^X-Spam-Status: No, score=3\.0 .*tests=authentication=3\r$/m);
      assert.doesNotMatch(text, /X-Spam-Flag/);
    });
  } finally {
    await dns.close();
  }
});

test('forged fields (Authentication-Results naming this host, X-Spam-*) do not reach the inside; the results moat adds and those of other hosts do', async () => {
  const dns = await startDns(zone);
  const policy: ConfigInput['policy'] = { chain: { data: ['authentication', 'spam-score'] }, dmarc: { enforceReject: false, failScore: 3 } };
  const forgedFields =
    'Authentication-Results: MX.Example.COM (our name, forged);\r\n dkim=pass header.d=dmarc.test\r\n' +
    'Authentication-Results: relay.other.example; spf=pass smtp.mailfrom=b@spf-pass.test\r\n' +
    'X-Spam-Flag: NO\r\nX-Spam-Score: -100\r\n';
  try {
    await withRelay({ policy, dns: dnsFor(dns.server) }, async ({ moat, sink }) => {
      await transcript(
        moat.port,
        '127.0.0.3',
        [...GREET('127.0.0.3'), 'C: MAIL FROM:<b@spf-pass.test>', 'S: 250 2.1.0 Accepted', 'C: RCPT TO:<user@example.com>', 'S: 250 2.1.5 Accepted', ...SEND('forged'), 'S: 250 2.0.0 Ok: queued as ID'],
        { forged: forgedFields + message('boss@dmarc.test', 'pay now') },
      );
      const [m] = await sink.waitFor(1);
      const text = m!.body.toString('latin1');
      const head = text.slice(0, text.indexOf('\r\n\r\n'));
      assert.equal(head.match(/^Authentication-Results: mx\.example\.com/gim)?.length, 1, 'one result naming this host: moat\'s own');
      assert.match(head, /^Authentication-Results: mx\.example\.com;[^]*dmarc=fail/m);
      assert.doesNotMatch(head, /dkim=pass header\.d=dmarc\.test/, 'the forged pass is gone, continuation line and all');
      assert.match(head, /^Authentication-Results: relay\.other\.example; spf=pass/m, 'another host\'s result is kept');
      assert.doesNotMatch(head, /X-Spam-Flag: NO|X-Spam-Score: -100/);
      assert.equal(head.match(/^X-Spam-Score:/gm)?.length, 1);
      assert.ok(head.indexOf('Authentication-Results: mx.example.com') < head.indexOf('Received: from'), 'moat\'s fields come first');
      assert.ok(text.endsWith('pay now\r\n'), 'the body is unchanged');
    });
  } finally {
    await dns.close();
  }
});

test('spam score: GTUBE is refused; DNSBL weight below the refusal threshold tags the message', async () => {
  const dns = await startDns(zone);
  const policy: ConfigInput['policy'] = {
    chain: { connect: ['dnsbl'], data: ['gtube', 'spam-score'] },
    dnsbl: { zones: [{ zone: 'tag.test', weight: 6 }], threshold: 10 },
  };
  try {
    await withRelay({ policy, dns: dnsFor(dns.server) }, async ({ moat, sink }) => {
      const tx = ['C: MAIL FROM:<a@spf-pass.test>', 'S: 250 2.1.0 Accepted', 'C: RCPT TO:<user@example.com>', 'S: 250 2.1.5 Accepted'];
      const messages = { gtube: message('a@spf-pass.test', `spam\r\n${GTUBE}\r\nmore`), plain: message('a@spf-pass.test', 'hello') };
      await transcript(moat.port, '127.0.0.3', [...GREET('127.0.0.3'), ...tx, ...SEND('gtube'), 'S: 550 5.7.1 Message rejected as spam', ...tx, ...SEND('plain'), 'S: 250 2.0.0 Ok: queued as ID'], messages);
      await transcript(moat.port, '127.0.0.20', [...GREET('127.0.0.20'), ...tx, ...SEND('plain'), 'S: 250 2.0.0 Ok: queued as ID'], messages);
      await sink.waitFor(2);
      assert.equal(sink.messages.length, 2, 'nothing of the GTUBE message was delivered');
      const clean = sink.messages.find((m) => !m.body.includes('X-Spam'));
      const tagged = sink.messages.find((m) => m.body.includes('X-Spam-Flag: YES\r\n'));
      assert.ok(clean, 'the unlisted client\'s message is unchanged');
      assert.ok(tagged, 'the listed client\'s message is tagged');
      assert.match(tagged!.body.toString(), /X-Spam-Status: Yes, score=6\.0 .*tests=dnsbl=6/);
    });
  } finally {
    await dns.close();
  }
});

test('directory harvest: the attacker is tarpitted, dropped and blocked; a client on another address is served normally', async () => {
  const policy: ConfigInput['policy'] = { harvest: { tarpitAfter: 2, tarpitMs: 20, tarpitMaxMs: 100, dropAfter: 4 }, blocks: { blockMs: 60_000 } };
  await withRelay({ policy, inbound: { recipients: { mode: 'list', list: ['known@example.com'] } } }, async ({ moat, sink }) => {
    const attacker = [
      ...GREET('127.0.0.10'),
      'C: MAIL FROM:<x@spf-pass.test>',
      'S: 250 2.1.0 Accepted',
      'C: RCPT TO:<a@example.com>',
      'S: 550 5.1.1 Recipient address rejected: user unknown',
      'C: RCPT TO:<b@example.com>',
      'S: 550 5.1.1 Recipient address rejected: user unknown',
      'C: RCPT TO:<known@example.com>',
      'S: 250 2.1.5 Accepted',
      'C: RCPT TO:<c@example.com>',
      'S: 550 5.1.1 Recipient address rejected: user unknown',
      'C: RCPT TO:<d@example.com>',
      'S: 421 4.7.0 Too many unknown recipients, closing connection',
      '-- closed',
    ];
    await transcript(moat.port, '127.0.0.10', attacker);
    await transcript(moat.port, '127.0.0.10', ['S: 421 4.7.0 Your address is temporarily blocked for abuse, try again later', '-- closed']);
    await transcript(
      moat.port,
      '127.0.0.11',
      [...GREET('127.0.0.11'), 'C: MAIL FROM:<x@spf-pass.test>', 'S: 250 2.1.0 Accepted', 'C: RCPT TO:<known@example.com>', 'S: 250 2.1.5 Accepted', ...SEND('m'), 'S: 250 2.0.0 Ok: queued as ID'],
      { m: message('x@spf-pass.test', 'welcome') },
    );
    const [m] = await sink.waitFor(1);
    assert.deepEqual(m!.to, ['known@example.com']);
  });
});

test('repeated relay attempts earn a block', async () => {
  const policy: ConfigInput['policy'] = { blocks: { relayAttempts: 3 } };
  await withRelay({ policy }, async ({ moat }) => {
    await transcript(moat.port, '127.0.0.12', [
      ...GREET('127.0.0.12'),
      'C: MAIL FROM:<x@spf-pass.test>',
      'S: 250 2.1.0 Accepted',
      'C: RCPT TO:<a@other.net>',
      'S: 554 5.7.1 Relay rejected for policy reasons',
      'C: RCPT TO:<b@other.net>',
      'S: 554 5.7.1 Relay rejected for policy reasons',
      'C: RCPT TO:<c%other.net@example.com>',
      'S: 421 4.7.0 Too many relay attempts, closing connection',
      '-- closed',
    ]);
    await transcript(moat.port, '127.0.0.12', ['S: 421 4.7.0 Your address is temporarily blocked for abuse, try again later', '-- closed']);
    await transcript(moat.port, '127.0.0.13', ['S: 220 mx.example.com ESMTP moat']);
  });
});

test('connection caps: concurrent connections per address get 421 4.7.0; other addresses are unaffected', async () => {
  const policy: ConfigInput['policy'] = { connections: { perIp: 2 } };
  await withRelay({ policy }, async ({ moat }) => {
    const held = [await RawSmtp.open(moat.port, '127.0.0.1', '127.0.0.14'), await RawSmtp.open(moat.port, '127.0.0.1', '127.0.0.14')];
    for (const h of held) assert.match(await h.reply(), /^220 /);
    await transcript(moat.port, '127.0.0.14', ['S: 421 4.7.0 Too many connections from your address, try again later', '-- closed']);
    await transcript(moat.port, '127.0.0.15', ['S: 220 mx.example.com ESMTP moat']);
    for (const h of held) h.destroy();
  });
});

test('connection rate per address: over ratePerIp in the window, 421 4.7.0; other addresses are unaffected', async () => {
  const policy: ConfigInput['policy'] = { connections: { perIp: 0, ratePerIp: 3, rateWindowMs: 60_000 } };
  await withRelay({ policy }, async ({ moat }) => {
    for (let i = 0; i < 3; i++) await transcript(moat.port, '127.0.0.19', ['S: 220 mx.example.com ESMTP moat', 'C: QUIT', 'S: 221 2.0.0 Bye']);
    await transcript(moat.port, '127.0.0.19', ['S: 421 4.7.0 Too many connections from your address in a short time, try again later', '-- closed']);
    await transcript(moat.port, '127.0.0.15', ['S: 220 mx.example.com ESMTP moat']);
  });
});

test('message rate per address: over the limit MAIL gets 450 4.7.1', async () => {
  const policy: ConfigInput['policy'] = { connections: { messagesPerIp: 1 } };
  await withRelay({ policy }, async ({ moat }) => {
    await transcript(moat.port, '127.0.0.16', [...GREET('127.0.0.16'), 'C: MAIL FROM:<x@a.example>', 'S: 250 2.1.0 Accepted', 'C: RSET', 'S: 250 2.0.0 Flushed', 'C: MAIL FROM:<x@a.example>', 'S: 450 4.7.1 Too many messages from your address, try again later']);
  });
});

test('a session with too many errors is closed with 421 4.7.0', async () => {
  const policy: ConfigInput['policy'] = { maxErrors: 3 };
  await withRelay({ policy }, async ({ moat }) => {
    await transcript(moat.port, '127.0.0.17', [
      ...GREET('127.0.0.17'),
      'C: RCPT TO:<a@example.com>',
      'S: 503 5.5.1 Error: need MAIL command',
      'C: MAIL FROM:<broken',
      'S: 501 5.1.7 Error: Bad sender address syntax',
      'C: DATA',
      'S: 503 5.5.1 Error: need RCPT command',
      'S: 421 4.7.0 Too many errors, closing connection',
      '-- closed',
    ]);
  });
});

test('a check that does not answer in time fails closed with 451 4.7.0: DKIM keys behind a DNS server that never answers', async () => {
  const dns = await startDns(zone, { silent: ['slow.test'] });
  const policy: ConfigInput['policy'] = { chain: { data: ['authentication'] }, checkTimeoutMs: 200 };
  const msg = await signed(message('a@x.slow.test', 'hello'), 'x.slow.test');
  try {
    await withRelay({ policy, dns: { servers: [dns.server], timeoutMs: 5000 } }, async ({ moat, sink }) => {
      await transcript(
        moat.port,
        '127.0.0.18',
        [...GREET('127.0.0.18'), 'C: MAIL FROM:<a@spf-pass.test>', 'S: 250 2.1.0 Accepted', 'C: RCPT TO:<user@example.com>', 'S: 250 2.1.5 Accepted', ...SEND('m'), 'S: 451 4.7.0 Policy check unavailable, try again later'],
        { m: msg },
      );
      assert.ok(dns.asked.includes('TXT sel._domainkey.x.slow.test'), 'the key was asked for');
      assert.equal(sink.messages.length, 0);
      assert.equal(moat.spool.messages.size, 0, 'nothing was queued');
    });
  } finally {
    await dns.close();
  }
});

test('greylisting (when listed): the first attempt of a triplet gets 450 4.7.1, the retry is accepted', async () => {
  const policy: ConfigInput['policy'] = { chain: { rcpt: ['harvest', 'greylist'] }, greylist: { delayMs: 0 } };
  await withRelay({ policy }, async ({ moat }) => {
    await transcript(moat.port, '127.0.0.21', [
      ...GREET('127.0.0.21'),
      'C: MAIL FROM:<x@sender.example>',
      'S: 250 2.1.0 Accepted',
      'C: RCPT TO:<user@example.com>',
      'S: 450 4.7.1 Greylisted, please try again later',
      'C: RCPT TO:<user@example.com>',
      'S: 250 2.1.5 Accepted',
    ]);
  });
});

/** A stand-in for rspamd's normal worker on loopback: answers POST /checkv2 as told, records what it got. */
async function startScorer(answer: (req: { headers: Record<string, string | string[] | undefined>; body: string }) => { status?: number; json?: unknown; hang?: boolean }) {
  const { createServer } = await import('node:http');
  const seen: Array<{ path: string; headers: Record<string, string | string[] | undefined>; body: string }> = [];
  const server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const got = { path: req.url ?? '', headers: req.headers, body: Buffer.concat(parts).toString('latin1') };
      seen.push(got);
      const a = answer(got);
      if (a.hang) return;
      res.writeHead(a.status ?? 200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(a.json ?? {}));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

test('external scorer (rspamd protocol): its score is added and tags the message; the scorer sees the message and its envelope', async () => {
  const scorer = await startScorer(() => ({ json: { score: 7.5, required_score: 15, action: 'add header', symbols: {} } }));
  const policy: ConfigInput['policy'] = { chain: { data: ['rspamd', 'spam-score'] }, rspamd: { url: scorer.url } };
  try {
    await withRelay({ policy }, async ({ moat, sink }) => {
      await transcript(
        moat.port,
        '127.0.0.3',
        [...GREET('127.0.0.3'), 'C: MAIL FROM:<a@sender.example>', 'S: 250 2.1.0 Accepted', 'C: RCPT TO:<user@example.com>', 'S: 250 2.1.5 Accepted', ...SEND('m'), 'S: 250 2.0.0 Ok: queued as ID'],
        { m: message('a@sender.example', 'buy now') },
      );
      const [m] = await sink.waitFor(1);
      assert.match(m!.body.toString(), /^X-Spam-Status: Yes, score=7\.5 .*tests=rspamd=7\.5\r$/m);
      assert.match(m!.body.toString(), /^X-Spam-Flag: YES\r$/m);
      const got = scorer.seen[0]!;
      assert.equal(got.path, '/checkv2');
      assert.equal(got.headers.ip, '127.0.0.3');
      assert.equal(got.headers.from, 'a@sender.example');
      assert.equal(got.headers.rcpt, 'user@example.com');
      assert.equal(got.headers.helo, 'client.example.net');
      assert.match(got.body, /^Received: from client\.example\.net/);
      assert.ok(got.body.endsWith('buy now\r\n'), 'the whole message');
    });
  } finally {
    await scorer.close();
  }
});

test('external scorer that does not answer in time: onFailure tempfail answers 451 4.7.0, ignore lets the message through unscored', async () => {
  const scorer = await startScorer(() => ({ hang: true }));
  const broken = await startScorer(() => ({ json: { action: 'no score here' } }));
  const tx = ['C: MAIL FROM:<a@sender.example>', 'S: 250 2.1.0 Accepted', 'C: RCPT TO:<user@example.com>', 'S: 250 2.1.5 Accepted'];
  const messages = { m: message('a@sender.example', 'hello') };
  try {
    await withRelay({ policy: { chain: { data: ['rspamd', 'spam-score'] }, rspamd: { url: scorer.url, timeoutMs: 200, onFailure: 'tempfail' } } }, async ({ moat }) => {
      await transcript(moat.port, '127.0.0.3', [...GREET('127.0.0.3'), ...tx, ...SEND('m'), 'S: 451 4.7.0 Policy check unavailable, try again later'], messages);
      assert.equal(moat.spool.messages.size, 0);
    });
    await withRelay({ policy: { chain: { data: ['rspamd', 'spam-score'] }, rspamd: { url: scorer.url, timeoutMs: 200, onFailure: 'ignore' } } }, async ({ moat, sink }) => {
      await transcript(moat.port, '127.0.0.3', [...GREET('127.0.0.3'), ...tx, ...SEND('m'), 'S: 250 2.0.0 Ok: queued as ID'], messages);
      const [m] = await sink.waitFor(1);
      assert.doesNotMatch(m!.body.toString(), /X-Spam/);
    });
    await withRelay({ policy: { chain: { data: ['rspamd'] }, rspamd: { url: broken.url, onFailure: 'tempfail' } } }, async ({ moat }) => {
      await transcript(moat.port, '127.0.0.3', [...GREET('127.0.0.3'), ...tx, ...SEND('m'), 'S: 451 4.7.0 Policy check unavailable, try again later'], messages);
    });
  } finally {
    await scorer.close();
    await broken.close();
  }
});

test('DNSBL: a zone that answers SERVFAIL counts as not listed; the other zones still count', async () => {
  const dns = await startDns(zone, { servfail: ['broken.test'] });
  const policy: ConfigInput['policy'] = { chain: { connect: ['dnsbl'] }, dnsbl: { zones: [{ zone: 'broken.test', weight: 5 }, { zone: 'bl.test' }] } };
  try {
    await withRelay({ policy, dns: dnsFor(dns.server) }, async ({ moat }) => {
      await transcript(moat.port, '127.0.0.3', ['S: 220 mx.example.com ESMTP moat']);
      await transcript(moat.port, '127.0.0.2', ['S: 554 5.7.1 Service unavailable; client address listed by bl.test', '-- closed']);
      assert.ok(dns.asked.includes('A 3.0.0.127.broken.test'));
    });
  } finally {
    await dns.close();
  }
});

test('a harvesting client that hangs up while tarpitted leaves moat serving others', async () => {
  const policy: ConfigInput['policy'] = { harvest: { tarpitAfter: 1, tarpitMs: 300, dropAfter: 50 } };
  await withRelay({ policy, inbound: { recipients: { mode: 'list', list: ['known@example.com'] } } }, async ({ moat }) => {
    const c = await RawSmtp.open(moat.port, '127.0.0.1', '127.0.0.22');
    await c.reply();
    await c.cmd('EHLO client.example.net');
    await c.cmd('MAIL FROM:<x@a.example>');
    assert.match(await c.cmd('RCPT TO:<nobody@example.com>'), /^550 5\.1\.1 /);
    c.write('RCPT TO:<nobody2@example.com>\r\n'); // tarpitted now
    c.destroy();
    await new Promise((r) => setTimeout(r, 400)); // let the tarpit's delay run out on the closed session
    await transcript(moat.port, '127.0.0.23', [...GREET('127.0.0.23'), 'C: MAIL FROM:<x@a.example>', 'S: 250 2.1.0 Accepted', 'C: RCPT TO:<known@example.com>', 'S: 250 2.1.5 Accepted']);
  });
});

test('a client that talks while the connect checks are still running (pregreetMs 0) gets 554 and is dropped', async () => {
  const dns = await startDns(zone, { silent: ['slow.test'] });
  const policy: ConfigInput['policy'] = { chain: { connect: ['dnsbl'] }, dnsbl: { zones: [{ zone: 'slow.test' }] } };
  try {
    await withRelay({ policy, dns: dnsFor(dns.server), inbound: { pregreetMs: 0 } }, async ({ moat }) => {
      await transcript(moat.port, '127.0.0.24', ['C: EHLO early.example.net', 'S: 554 5.7.1 Protocol violation: talked before the greeting', '-- closed']);
    });
  } finally {
    await dns.close();
  }
});
