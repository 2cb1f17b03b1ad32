/*
 * config/schema.ts: the one schema of moat's configuration, with defaults.
 *
 * Validates a parsed JSON document once and returns a frozen, fully defaulted
 * Config. Error messages name the path of the bad value. Must never read files,
 * environment or globals: callers (moatd's start-up, later the console's commit)
 * hand it the document and pass the result on.
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { DEFAULT_BLOCKED_EXTENSIONS, DEFAULT_BLOCKED_TYPES } from '../scan/attachments.ts';
import { parseClamdAddress } from '../scan/clamd.ts';
import { isDnsServer } from '../dns/resolver.ts';
import { CHECK_NAMES, CHECK_PHASES, type Phase } from '../policy/check-names.ts';

const hostname = z
  .string()
  .min(1)
  .max(253)
  .regex(/^(?=.{1,253}$)([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/, {
    message: 'expected a host name such as mx.example.com',
  });

const host = z.string().refine((h) => isIP(h) !== 0 || hostname.safeParse(h).success, {
  message: 'expected an IP address or a host name',
});

const port = z.number().int().min(1).max(65535);

/** "127.0.0.1:2525", "[::1]:25", ":25" (all addresses). */
const listenAddress = z.string().transform((s, ctx) => {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([0-9.]*)):(\d{1,5})$/.exec(s);
  const p = m ? Number(m[3]) : NaN;
  const h = m ? (m[1] ?? m[2] ?? '') : '';
  if (!m || p < 0 || p > 65535 || (h !== '' && isIP(h) === 0)) {
    ctx.addIssue({ code: 'custom', message: `expected ADDRESS:PORT such as 127.0.0.1:2525 or [::1]:25, got ${describe(s)}` });
    return z.NEVER;
  }
  return { host: h === '' ? '::' : h, port: p };
});

const domain = z
  .string()
  .transform((d) => d.toLowerCase())
  .pipe(hostname.refine((d) => d.includes('.'), { message: 'expected a domain with at least one dot' }));

const cidr = z.string().refine(
  (s) => {
    const [addr, bits, extra] = s.split('/');
    if (extra !== undefined || !addr) return false;
    const v = isIP(addr);
    if (v === 0) return false;
    if (bits === undefined) return true;
    if (!/^\d{1,3}$/.test(bits)) return false;
    return Number(bits) <= (v === 4 ? 32 : 128);
  },
  { message: 'expected a network such as 10.0.0.0/8 or fd00::/8' },
);

const bytes = z.number({ message: 'expected a number of bytes' }).int().positive();
const ms = z.number({ message: 'expected a duration in milliseconds' }).int().nonnegative();
const headerName = z.string().regex(/^[\x21-\x39\x3b-\x7e]{1,76}$/, { message: 'expected a header field name' });

const recipientEntry = z
  .string()
  .refine((s) => /^(\*|[^\s@<>"]+)@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+$/.test(s), {
    message: 'expected user@domain or *@domain',
  })
  .transform((s) => s.toLowerCase());

const internalServer = z.strictObject({
  host,
  port: port.default(25),
  priority: z.number().int().min(0).max(65535).default(10),
  weight: z.number().int().min(1).max(1000).default(1),
  /** none: plain SMTP; opportunistic: STARTTLS when offered; required: STARTTLS or fail over. */
  tls: z.enum(['none', 'opportunistic', 'required']).default('opportunistic'),
  /** Verify the server's certificate (chain and name) when TLS is used. */
  verifyCertificate: z.boolean().default(false),
  /** PEM file with the CA(s) that signed the internal servers' certificates. */
  caFile: z.string().optional(),
  /** Name to verify the certificate against, when it differs from host. */
  servername: hostname.optional(),
});

/** A content rule: a header field pattern or a body literal, with what to do on a match. */
const contentRule = z
  .strictObject({
    name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, { message: 'expected a rule name of letters, digits, _ . -' }),
    header: z
      .strictObject({
        field: z.string().regex(/^[\x21-\x39\x3b-\x7e]{1,76}$/, { message: 'expected a header field name' }).transform((f) => f.toLowerCase()),
        /** A JavaScript regular expression, tested against each unfolded value of the field. */
        pattern: z.string().min(1).max(1000),
        ignoreCase: z.boolean().default(true),
      })
      .optional(),
    /** Bytes to find anywhere in the body (decoded parts included); UTF-8. */
    body: z.string().min(4).max(256).optional(),
    action: z.enum(['reject', 'tag']),
  })
  .superRefine((r, ctx) => {
    if ((r.header === undefined) === (r.body === undefined)) ctx.addIssue({ code: 'custom', message: 'give either header or body' });
    if (r.header) {
      try {
        new RegExp(r.header.pattern, r.header.ignoreCase ? 'iu' : 'u');
      } catch (e) {
        ctx.addIssue({ code: 'custom', path: ['header', 'pattern'], message: `not a valid regular expression: ${(e as Error).message}` });
      }
    }
  });
/* ---- policy and dns (issue 4) ---- */

const dnsServer = z.string().refine(isDnsServer, { message: 'expected ADDRESS or ADDRESS:PORT such as 127.0.0.1:53 or [::1]:53' });

/** "127.0.0.2" or "127.0.0.2-127.0.0.11": the DNSBL answers that count. */
const answerRange = z.string().refine(
  (s) => {
    const [a, b, extra] = s.split('-');
    return extra === undefined && isIP(a ?? '') === 4 && (b === undefined || isIP(b) === 4);
  },
  { message: 'expected an IPv4 address or a range such as 127.0.0.2-127.0.0.11' },
);

/** A domain suffix: "example.net" matches example.net and every name under it. */
const suffix = z
  .string()
  .transform((d) => d.toLowerCase().replace(/^\./, ''))
  .pipe(hostname);

const action = z.enum(['reject', 'tempfail', 'tag', 'ignore']);

/** The ordered check names of one phase: known, allowed in that phase, each at most once. */
const phaseChain = (phase: Phase) =>
  z
    .array(z.string())
    .max(32)
    .superRefine((names, ctx) => {
      names.forEach((n, i) => {
        const phases = (CHECK_PHASES as Record<string, readonly Phase[]>)[n];
        if (!phases) ctx.addIssue({ code: 'custom', path: [i], message: `unknown check ${JSON.stringify(n.slice(0, 40))}; known: ${CHECK_NAMES.join(', ')}` });
        else if (!phases.includes(phase)) ctx.addIssue({ code: 'custom', path: [i], message: `${n} cannot run in the ${phase} phase (only ${phases.join(', ')})` });
        else if (names.indexOf(n) !== i) ctx.addIssue({ code: 'custom', path: [i], message: `${n} is listed twice` });
      });
    });

const policySchema = z.strictObject({
  /** The ordered checks of each SMTP phase; a name policy/registry.ts does not know is refused. */
  chain: z
    .strictObject({
      connect: phaseChain('connect').default(['blocks', 'connection-limits']),
      helo: phaseChain('helo').default(['helo']),
      mail: phaseChain('mail').default(['sender-domains', 'message-rate']),
      rcpt: phaseChain('rcpt').default(['harvest']),
      data: phaseChain('data').default(['gtube', 'spam-score']),
    })
    .prefault({}),
  /** A check that has not answered after this long yields 451 4.7.0 (fail closed). */
  checkTimeoutMs: ms.min(10).max(120_000).default(20_000),
  /** After this many 5xx replies in one session: 421 and the connection is closed (0: no limit). */
  maxErrors: z.number().int().min(0).max(1000).default(20),
  connections: z
    .strictObject({
      /** Concurrent sessions from one address (0: no limit). */
      perIp: z.number().int().min(0).max(10_000).default(50),
      /** New connections from one address per rateWindowMs (0: no limit). */
      ratePerIp: z.number().int().min(0).max(1_000_000).default(0),
      rateWindowMs: ms.min(1000).max(86_400_000).default(60_000),
      /** Messages from one address per rateWindowMs (0: no limit); used by the message-rate check. */
      messagesPerIp: z.number().int().min(0).max(1_000_000).default(0),
      /** Addresses remembered for rates, harvest counts and blocks; the oldest is forgotten first. */
      maxTracked: z.number().int().min(100).max(1_000_000).default(50_000),
    })
    .prefault({}),
  blocks: z
    .strictObject({
      /** How long an address that earned a block is refused at connect. */
      blockMs: ms.max(7 * 86_400_000).default(3_600_000),
      /** Relay attempts (554 5.7.1) from one address within windowMs that earn a block (0: never). */
      relayAttempts: z.number().int().min(0).max(10_000).default(20),
      windowMs: ms.min(1000).max(86_400_000).default(600_000),
    })
    .prefault({}),
  harvest: z
    .strictObject({
      /** Unknown recipients from one address within windowMs after which every RCPT reply is delayed. */
      tarpitAfter: z.number().int().min(1).max(10_000).default(5),
      /** First delay; it doubles with each further unknown recipient, up to tarpitMaxMs. */
      tarpitMs: ms.max(60_000).default(1_000),
      tarpitMaxMs: ms.max(300_000).default(20_000),
      /** Unknown recipients within windowMs after which the session is dropped and the address blocked. */
      dropAfter: z.number().int().min(1).max(10_000).default(15),
      windowMs: ms.min(1000).max(86_400_000).default(600_000),
    })
    .prefault({}),
  greylist: z
    .strictObject({
      /** A retry before this long after the first attempt is greylisted again. */
      delayMs: ms.max(86_400_000).default(300_000),
      /** A first attempt not retried within this long is forgotten. */
      retryWindowMs: ms.min(1000).max(7 * 86_400_000).default(4 * 3_600_000),
      /** A triplet that passed passes at once for this long after its last use. */
      passMs: ms.min(1000).max(90 * 86_400_000).default(36 * 86_400_000),
      maxEntries: z.number().int().min(100).max(10_000_000).default(100_000),
    })
    .prefault({}),
  dnsbl: z
    .strictObject({
      zones: z
        .array(
          z.strictObject({
            zone: hostname,
            /** Added to the connection's DNSBL score on a listing; negative for an allowlist. */
            weight: z.number().min(-100).max(100).default(1),
            /** The answers that count; others (such as 127.255.255.254, "query refused") are ignored. */
            answers: z.array(answerRange).max(32).default(['127.0.0.2-127.0.0.255']),
          }),
        )
        .max(16)
        .default([]),
      /** A connection whose DNSBL score reaches this is refused (554 5.7.1); below it the score counts toward spam. */
      threshold: z.number().min(0.01).max(1000).default(1),
    })
    .prefault({}),
  helo: z
    .strictObject({
      /** HELO/EHLO that is neither a host name with a dot nor a bracketed address literal. */
      syntax: action.default('reject'),
      /** A bare IP address without brackets. */
      bareIp: action.default('reject'),
      /** Our own host name, a local domain, or our address. */
      claimsUs: action.default('reject'),
      /** Spam points when an action is `tag`. */
      score: z.number().min(0).max(100).default(2),
    })
    .prefault({}),
  senders: z
    .strictObject({
      /** Sender domain suffixes always let through the sender checks (never the relay). */
      allow: z.array(suffix).max(10_000).default([]),
      /** Sender domain suffixes refused at MAIL (554 5.7.1). */
      deny: z.array(suffix).max(10_000).default([]),
    })
    .prefault({}),
  spf: z
    .strictObject({
      fail: action.default('reject'),
      softfail: action.default('tag'),
      neutral: action.default('ignore'),
      none: action.default('ignore'),
      temperror: action.default('tempfail'),
      permerror: action.default('tag'),
      /** Spam points of a result whose action is `tag`. */
      score: z.number().min(0).max(100).default(3),
    })
    .prefault({}),
  dmarc: z
    .strictObject({
      /** Refuse (550 5.7.1) mail that fails DMARC where the domain publishes p=reject. */
      enforceReject: z.boolean().default(true),
      /** Spam points for a DMARC failure that is not refused (p=none, p=quarantine). */
      failScore: z.number().min(0).max(100).default(5),
      /** Spam points for a DKIM signature that does not verify. */
      dkimFailScore: z.number().min(0).max(100).default(1),
    })
    .prefault({}),
  rspamd: z
    .strictObject({
      /** Where rspamd's normal worker listens (its HTTP protocol, POST /checkv2). */
      url: z
        .string()
        .refine((u) => /^https?:\/\/[^/]+\/?$/.test(u) && URL.canParse(u), { message: 'expected http://HOST:PORT such as http://127.0.0.1:11333' })
        .default('http://127.0.0.1:11333'),
      timeoutMs: ms.min(10).max(120_000).default(10_000),
      /** A scorer that fails or does not answer in time: tempfail (451 4.7.0) or ignore (no score). */
      onFailure: z.enum(['tempfail', 'ignore']).default('ignore'),
      /** The scorer's score is multiplied by this before it is added. */
      weight: z.number().min(0).max(100).default(1),
    })
    .prefault({}),
  spam: z
    .strictObject({
      /** A message whose score reaches this gets X-Spam-Flag: YES. */
      tagScore: z.number().min(0).max(1000).default(5),
      /** A message whose score reaches this is refused (550 5.7.1). */
      rejectScore: z.number().min(0).max(1000).default(15),
      /** Spam points of the GTUBE test string (so it reaches rejectScore by default). */
      gtubeScore: z.number().min(0).max(1000).default(1000),
    })
    .prefault({}),
});

export const configSchema = z.strictObject({
  hostname,
  inbound: z.strictObject({
    listen: listenAddress.default({ host: '::', port: 25 } as never),
    localDomains: z.array(domain).min(1, { message: 'name at least one local domain' }),
    recipients: z
      .strictObject({
        mode: z.enum(['any', 'list', 'verify']).default('any'),
        list: z.array(recipientEntry).default([]),
        verify: z
          .strictObject({
            positiveTtlMs: ms.default(3_600_000),
            negativeTtlMs: ms.default(300_000),
            timeoutMs: ms.default(10_000),
            maxCacheEntries: z.number().int().positive().default(20_000),
          })
          .prefault({}),
      })
      .prefault({}),
    maxMessageSize: bytes.default(26_214_400),
    /** What the scan guard does with the DATA stream (scan/guard.ts). */
    data: z
      .strictObject({
        /** Bare CR or LF in the data (SMTP smuggling): refuse with 550 5.6.0, or let delivery turn them into CRLF. */
        bareLineEndings: z.enum(['reject', 'normalise']).default('reject'),
        /** A line over 998 octets: refuse with 550 5.6.0, accept it as is, or accept it and fold it (CRLF SPACE) on the way to the next hop. */
        longLines: z.enum(['reject', 'accept', 'fold']).default('reject'),
      })
      .prefault({}),
    maxRecipients: z.number().int().min(1).max(10_000).default(100),
    /** Wait before the banner; a client that talks first is refused. 0 greets at once. */
    pregreetMs: ms.max(30_000).default(0),
    maxConnections: z.number().int().positive().default(200),
    /** Idle time allowed between client commands or data. */
    idleTimeoutMs: ms.min(1000).default(300_000),
    /** Hard deadline for a whole session, so that a slow drip cannot hold a slot forever. */
    sessionDeadlineMs: ms.min(1000).default(1_800_000),
    tls: z
      .strictObject({
        certFile: z.string(),
        keyFile: z.string(),
      })
      .optional(),
  }),
  internal: z.strictObject({
    servers: z.array(internalServer).min(1, { message: 'name at least one internal server' }),
    networks: z.array(cidr).default([]),
    /** Connections kept open to each internal server, reused between messages. */
    maxConnectionsPerServer: z.number().int().min(1).max(64).default(4),
    connectTimeoutMs: ms.min(100).default(30_000),
    commandTimeoutMs: ms.min(100).default(300_000),
    /**
     * Header fields removed from the stored message before it reaches the internal servers:
     * the ones moat's own checks add, which a sender could forge. Authentication-Results
     * fields naming this host (hostname) are removed in any case (RFC 8601 §5).
     */
    removeHeaders: z.array(headerName).max(100).default(['X-Spam-Flag', 'X-Spam-Score', 'X-Spam-Status', 'X-Moat-Rule']),
  }),
  queue: z
    .strictObject({
      /** First retry after this long; each further retry waits twice as long, up to maxRetryMs. */
      minRetryMs: ms.min(1).default(60_000),
      maxRetryMs: ms.min(1).default(3_600_000),
      /** After this long undelivered, a message is returned to its sender (DSN). */
      maxLifetimeMs: ms.min(1).default(5 * 24 * 3_600_000),
      /** Messages being delivered to the internal servers at once (mail for the Internet: outbound.maxActive). */
      maxActive: z.number().int().min(1).max(1000).default(16),
    })
    .prefault({}),
  storage: z.strictObject({
    dataDir: z.string().min(1),
    /** Refuse new mail (452 4.3.1) when the spool's file system has less free space than this. */
    minFreeBytes: bytes.default(64 * 1024 * 1024),
    /** Size at which the spool starts a new segment file. */
    segmentBytes: bytes.min(1024 * 1024).default(64 * 1024 * 1024),
    /**
     * Benchmark knob: adds this delay to every fsync, serialised as on an SD card
     * (5–50 ms a flush). Leave 0 on a real appliance.
     */
    syncDelayMs: ms.max(1000).default(0),
  }),
  /** Delivery of mail for other domains (from internal.networks) by MX (delivery/outbound.ts). */
  outbound: z
    .strictObject({
      /** Port of the receiving MX servers. 25; anything else is for tests and labs. */
      port: port.default(25),
      connectTimeoutMs: ms.min(100).default(30_000),
      commandTimeoutMs: ms.min(100).default(300_000),
      /** Header fields removed from outgoing mail, so that it names no internal host or address. */
      removeHeaders: z.array(headerName).max(100).default(['Received', 'X-Originating-IP', 'X-Forwarded-For']),
      /** Users who may relay outward with SMTP AUTH (PLAIN/LOGIN, only after STARTTLS). */
      users: z
        .array(
          z.strictObject({
            name: z.string().regex(/^[A-Za-z0-9._@+-]{1,64}$/, { message: 'expected a user name of letters, digits and . _ @ + -' }),
            passwordHash: z.string().regex(/^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/, { message: 'expected a scrypt hash (scrypt$N$r$p$salt$hash), as `moat ctl` or the console make' }),
          }),
        )
        .max(1000)
        .default([]),
      /** DKIM keys per sender domain: mail from that domain is signed on its way out. */
      dkim: z
        .array(
          z.strictObject({
            domain,
            selector: z.string().regex(/^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62})$/, { message: 'expected a DKIM selector such as mail2026' }),
            /** PEM private key (RSA or Ed25519), on the data partition. */
            keyFile: z.string().min(1),
          }),
        )
        .max(100)
        .default([]),
      /** Outbound transactions at once, over all destinations (internal delivery has queue.maxActive of its own). */
      maxActive: z.number().int().min(1).max(1000).default(16),
      /** Transactions at once to one destination domain (or to the smart host, with smartHost). */
      perDomainConcurrency: z.number().int().min(1).max(100).default(4),
      /** An idle connection to a destination host is kept this long for the next message to that domain (0: never reused). */
      idleConnectionMs: ms.max(300_000).default(10_000),
      /** Idle connections kept over all destinations. */
      maxIdleConnections: z.number().int().min(0).max(1000).default(64),
      /** Retry schedule of mail for the Internet, and of a destination domain that could not be reached. */
      retry: z
        .strictObject({
          minMs: ms.min(1).default(300_000),
          factor: z.number().min(1).max(10).default(2),
          maxMs: ms.min(1).default(4_000_000),
          /** After this long undelivered, a message is returned to its sender (DSN). */
          lifetimeMs: ms.min(1).default(5 * 24 * 3_600_000),
        })
        .prefault({}),
      /** A message still undelivered after this long gets one "delayed" DSN to its sender; 0: never. */
      delayWarningAfterMs: ms.default(0),
      /** TLS towards the receiving hosts: per destination domain none / may (opportunistic) / verify. */
      tls: z
        .strictObject({
          default: z.enum(['none', 'may', 'verify']).default('may'),
          domains: z.record(domain, z.enum(['none', 'may', 'verify'])).default({}),
          /** PEM CA(s) trusted for `verify` instead of the system's store. */
          caFile: z.string().min(1).optional(),
        })
        .prefault({}),
      /** MTA-STS (RFC 8461): enforce the policies destination domains publish. */
      mtaSts: z
        .strictObject({
          enabled: z.boolean().default(false),
          /** The whole policy fetch (HTTPS) may take this long. */
          timeoutMs: ms.min(100).max(120_000).default(20_000),
          /** A longer policy file is refused (RFC 8461 suggests 64 KB). */
          maxPolicyBytes: bytes.max(1024 * 1024).default(64 * 1024),
          /** Domains whose policies are kept in memory. */
          maxEntries: z.number().int().min(1).max(100_000).default(1000),
        })
        .prefault({}),
      /** All outbound mail to one upstream relay instead of MX delivery. */
      smartHost: z
        .strictObject({
          host,
          port: port.default(587),
          /** verify: STARTTLS with a verified certificate; encrypt: STARTTLS, not verified; may: when offered; none. */
          tls: z.enum(['none', 'may', 'encrypt', 'verify']).default('verify'),
          user: z.string().regex(/^[\x21-\x7e]{1,255}$/, { message: 'expected a user name of printable characters without spaces' }).optional(),
          /** File holding the password (first line), on the data partition; needs `user`. */
          passwordFile: z.string().min(1).optional(),
          /** Send the password even without TLS (only for a relay on a trusted link). */
          allowPlaintextAuth: z.boolean().default(false),
        })
        .optional(),
    })
    .prefault({}),
  /** The scan pipeline (scan/): limits of the MIME walker, attachment policy, content rules, signatures, clamd. */
  scan: z
    .strictObject({
      headers: z
        .strictObject({
          /** Size of the message header; more is refused with 552 5.3.4. */
          maxBytes: bytes.max(16 * 1024 * 1024).default(256 * 1024),
          /** Header fields of the message (and of each part). */
          maxFields: z.number().int().min(10).max(100_000).default(1000),
        })
        .prefault({}),
      mime: z
        .strictObject({
          maxParts: z.number().int().min(1).max(100_000).default(1000),
          maxDepth: z.number().int().min(1).max(100).default(20),
          maxPartHeaderBytes: bytes.max(16 * 1024 * 1024).default(64 * 1024),
        })
        .prefault({}),
      attachments: z
        .strictObject({
          blockedExtensions: z
            .array(z.string().regex(/^\.?[A-Za-z0-9_-]{1,20}$/, { message: 'expected a file extension such as exe' }).transform((e) => e.replace(/^\./, '').toLowerCase()))
            .default([...DEFAULT_BLOCKED_EXTENSIONS]),
          blockedTypes: z
            .array(z.string().regex(/^[A-Za-z0-9!#$&^_.+-]+\/(\*|[A-Za-z0-9!#$&^_.+-]+)$/, { message: 'expected a media type such as application/x-msdownload or video/*' }).transform((t) => t.toLowerCase()))
            .default([...DEFAULT_BLOCKED_TYPES]),
        })
        .prefault({}),
      rules: z
        .array(contentRule)
        .max(1000)
        .refine((rs) => rs.filter((r) => r.body !== undefined).length <= 100, { message: 'at most 100 body rules (each is a search of its own; use signatures for more)' })
        .refine((rs) => new Set(rs.map((r) => r.name)).size === rs.length, { message: 'rule names must be unique' })
        .default([]),
      signatures: z
        .strictObject({
          /** ClamAV signature files: .ndb (body), .hdb (MD5), .hsb (SHA-256) of attachments. */
          files: z.array(z.string().regex(/\.(ndb|hdb|hsb)$/, { message: 'expected a .ndb, .hdb or .hsb file' })).default([]),
          /** The EICAR test signature, built in. */
          eicar: z.boolean().default(true),
        })
        .prefault({}),
      clamd: z
        .strictObject({
          /** A unix socket (/run/clamav/clamd.ctl) or HOST:PORT. */
          address: z.string().refine((a) => parseClamdAddress(a) !== null, { message: 'expected a unix socket path or HOST:PORT' }),
          timeoutMs: ms.min(100).default(30_000),
          /** Bytes of a message sent to clamd; keep at or below clamd's StreamMaxLength. */
          maxBytes: bytes.default(25 * 1024 * 1024),
          /** clamd unreachable, failing or too slow: 451 4.7.1 (tempfail) or let the mail through (accept). */
          onFailure: z.enum(['tempfail', 'accept']).default('tempfail'),
        })
        .optional(),
    })
    .prefault({}),
  log: z
    .strictObject({
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    })
    .prefault({}),
  /** The resolver every DNS lookup of moat uses (dns/resolver.ts). */
  dns: z
    .strictObject({
      /** "ADDRESS" or "ADDRESS:PORT"; none: the system's resolvers (/etc/resolv.conf). */
      servers: z.array(dnsServer).max(8).default([]),
      timeoutMs: ms.min(10).max(60_000).default(5_000),
      cacheEntries: z.number().int().min(1).max(1_000_000).default(20_000),
      /** Longest time an answer is cached (also the cache time of TXT and MX answers). */
      maxTtlMs: ms.max(86_400_000).default(3_600_000),
      /** How long "no such name" is cached. */
      negativeTtlMs: ms.max(86_400_000).default(300_000),
    })
    .prefault({}),
  /** The anti-abuse policy (policy/): ordered checks per SMTP phase and their settings. */
  policy: policySchema.prefault({}),
  // --- issue 6: console, control socket, administrator, the appliance's own network ---
  /** The serial console (moat-panel): 8N1 on this device. */
  console: z
    .strictObject({
      device: z.string().min(1).default('/dev/serial0'),
      baudRate: z
        .number()
        .int()
        .refine((b) => [9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600].includes(b), { message: 'expected one of 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600' })
        .default(115_200),
      /** A logged-in console with no keystroke for this long logs out. */
      idleTimeoutMs: ms.min(1000).default(600_000),
      /** Lines shown before "--More--"; 0 never pages. */
      pageLines: z.number().int().min(0).max(1000).default(24),
    })
    .prefault({}),
  /** moatd's control socket (moat-panel and `moat ctl` speak to it). */
  control: z
    .strictObject({
      socket: z.string().min(1).max(100).default('/run/moat/control.sock'),
    })
    .prefault({}),
  /** The console's administrator. Without a password hash the factory password `moat` applies and must be changed at the first login. */
  admin: z
    .strictObject({
      passwordHash: z
        .string()
        .regex(/^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/, { message: 'expected a hash made by the console (scrypt$N$r$p$salt$hash)' })
        .optional(),
      mustChangePassword: z.boolean().default(true),
    })
    .prefault({}),
  /** The appliance's own network settings, written on commit as OS network files (see README). */
  network: z
    .strictObject({
      interface: z.string().regex(/^[A-Za-z0-9_.-]{1,15}$/, { message: 'expected an interface name such as eth0' }).default('eth0'),
      /** dhcp: address, gateway and DNS servers from DHCP; static: the settings below. */
      mode: z.enum(['dhcp', 'static']).default('dhcp'),
      address: z.string().refine((a) => isIP(a) !== 0, { message: 'expected an IP address' }).optional(),
      prefix: z.number().int().min(0).max(128).optional(),
      gateway: z.string().refine((a) => isIP(a) !== 0, { message: 'expected an IP address' }).optional(),
      dnsServers: z.array(z.string().refine((a) => isIP(a) !== 0, { message: 'expected an IP address' })).max(3).default([]),
      /** The appliance's host name (/etc/hostname); default: the first label of `hostname`. */
      hostname: z.string().regex(/^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/, { message: 'expected a single host name label such as moat' }).optional(),
      ntpServers: z.array(host).max(8).default([]),
      /** Where the files are written: / on the appliance (etc/… under it); a folder under .dev/ in development. Empty: not written. */
      filesRoot: z.string().default(''),
    })
    .prefault({}),
  // --- issue 7: health model and front panel ---
  /** The health model (health/monitor.ts): how often it probes and where degraded begins. */
  health: z
    .strictObject({
      /** Time between two rounds of probes (internal servers, DNS, clamd, disk, certificate). */
      intervalMs: ms.min(1000).max(3_600_000).default(30_000),
      /** A probe that has not answered after this long counts as failed. */
      probeTimeoutMs: ms.min(100).max(60_000).default(5_000),
      /** Queued messages from which the queue counts as backing up (degraded). */
      queueMessages: z.number().int().min(1).default(1000),
      /** Age of the oldest queued message from which the queue counts as backing up (degraded). */
      queueAgeMs: ms.min(1000).default(3_600_000),
      /** Free space of the data partition below which health is degraded (below storage.minFreeBytes it is a fault). */
      lowFreeBytes: bytes.default(256 * 1024 * 1024),
      /** Days before the inbound TLS certificate expires from which health is degraded. */
      certWarnDays: z.number().int().min(0).max(365).default(14),
      /** A file that exists once the system clock is synchronised (systemd-timesyncd: /run/systemd/timesync/synchronized); until then health is degraded. Empty: not checked. */
      clockSyncFile: z.string().max(200).default(''),
    })
    .prefault({}),
  /** The front panel (moat-panel): board profile, LED class root, button input device. */
  panel: z
    .strictObject({
      /** A board profile in board/: pi3, pi4, pi5, cm4 or simulator. */
      board: z.enum(['pi3', 'pi4', 'pi5', 'cm4', 'simulator']).default('pi4'),
      /** The Linux LED class folder holding moat:green:status, moat:red:fault, moat:yellow:activity. */
      ledsRoot: z.string().min(1).default('/sys/class/leds'),
      /** The gpio-key input device of the button (input_event records); empty: no button. */
      buttonDevice: z.string().default('/dev/input/by-path/platform-button-event'),
      /** How often moat-panel asks moatd for its status; no answer for faultAfterMs shows FAULT. */
      pollMs: ms.min(100).max(5_000).default(1_000),
      faultAfterMs: ms.min(500).max(5_000).default(3_000),
    })
    .prefault({}),
});

export type Config = z.output<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
export type InternalServer = Config['internal']['servers'][number];

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? value.slice(0, 60) + '…' : value);
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'an object';
  return String(value);
}

function valueAt(doc: unknown, path: PropertyKey[]): unknown {
  let v: unknown = doc;
  for (const k of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[k];
  }
  return v;
}

export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

/** Validates a parsed document; throws ConfigError naming each bad path. */
export function parseConfig(doc: unknown): Config {
  const r = configSchema.safeParse(doc);
  if (!r.success) {
    const problems = r.error.issues.map((i) => {
      const path = i.path.length ? i.path.map(String).join('.') : '(top level)';
      if (i.code === 'unrecognized_keys') {
        // the names are echoed shortened, and ten at most: a document may carry any key
        const names = i.keys.slice(0, 10).map((k) => JSON.stringify(k.length > 60 ? k.slice(0, 60) + '…' : k));
        return `${path}: unknown setting ${names.join(', ')}${i.keys.length > 10 ? ` and ${i.keys.length - 10} more` : ''}`;
      }
      const got = valueAt(doc, i.path);
      if (i.code === 'invalid_type') {
        if (got === undefined) return `${path}: required setting is missing`;
        const expected = i.message.replace(/^Invalid input: /, '').replace(/, received .*$/, '');
        return `${path}: ${expected}, got ${describe(got)}`;
      }
      return `${path}: ${i.message}`;
    });
    throw new ConfigError(problems);
  }
  const c = r.data;
  if (c.queue.maxRetryMs < c.queue.minRetryMs) throw new ConfigError(['queue.maxRetryMs: must not be below queue.minRetryMs']);
  if (c.outbound.retry.maxMs < c.outbound.retry.minMs) throw new ConfigError(['outbound.retry.maxMs: must not be below outbound.retry.minMs']);
  const sh = c.outbound.smartHost;
  if (sh && (sh.user === undefined) !== (sh.passwordFile === undefined)) throw new ConfigError(['outbound.smartHost: user and passwordFile go together']);
  if (c.inbound.recipients.mode === 'list' && c.inbound.recipients.list.length === 0)
    throw new ConfigError(['inbound.recipients.list: mode "list" needs at least one entry']);
  if (c.network.mode === 'static') {
    const missing = (['address', 'prefix'] as const).filter((k) => c.network[k] === undefined);
    if (missing.length) throw new ConfigError(missing.map((k) => `network.${k}: mode "static" needs it`));
    if (c.network.prefix! > (isIP(c.network.address!) === 4 ? 32 : 128)) throw new ConfigError([`network.prefix: ${c.network.prefix} is too long for ${c.network.address}`]);
  }
  return deepFreeze(c);
}
