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
    ctx.addIssue({ code: 'custom', message: `expected ADDRESS:PORT such as 127.0.0.1:2525 or [::1]:25, got ${JSON.stringify(s)}` });
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
        /** A line over 998 octets: refuse with 550 5.6.0, or accept it as is (folding is not done yet). */
        longLines: z.enum(['reject', 'accept']).default('reject'),
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
  }),
  queue: z
    .strictObject({
      /** First retry after this long; each further retry waits twice as long, up to maxRetryMs. */
      minRetryMs: ms.min(1).default(60_000),
      maxRetryMs: ms.min(1).default(3_600_000),
      /** After this long undelivered, a message is returned to its sender (DSN). */
      maxLifetimeMs: ms.min(1).default(5 * 24 * 3_600_000),
      /** Messages being delivered at once. */
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
  log: z
    .strictObject({
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    })
    .prefault({}),
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
      if (i.code === 'unrecognized_keys') return `${path}: unknown setting ${i.keys.map((k) => JSON.stringify(k)).join(', ')}`;
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
  if (c.inbound.recipients.mode === 'list' && c.inbound.recipients.list.length === 0)
    throw new ConfigError(['inbound.recipients.list: mode "list" needs at least one entry']);
  if (c.network.mode === 'static') {
    const missing = (['address', 'prefix'] as const).filter((k) => c.network[k] === undefined);
    if (missing.length) throw new ConfigError(missing.map((k) => `network.${k}: mode "static" needs it`));
    if (c.network.prefix! > (isIP(c.network.address!) === 4 ? 32 : 128)) throw new ConfigError([`network.prefix: ${c.network.prefix} is too long for ${c.network.address}`]);
  }
  return deepFreeze(c);
}
