/*
 * smtp/inbound.ts: the Internet-facing SMTP listener.
 *
 * Takes a session from connect to the reply to the final dot: strict envelope
 * parsing, relay control and recipient validation at RCPT, the message streamed
 * chunk by chunk through the scan chain (scan/pipeline.ts: guard, size) into
 * the spool, the chain's verdict as the reply to the final dot, and a 250 only
 * once the spool has flushed it.
 * Every refusal happens in the dialogue (4xx/5xx), never as a later bounce.
 *
 * Must never: answer 250 before Spool.commit() resolved; hold a message body in
 * memory; log a message body; let an address that could make a later hop relay
 * through. Called by moatd.ts; hands committed messages to queue/manager.ts.
 */
import { readFileSync } from 'node:fs';
import type { Readable } from 'node:stream';
import type { SMTPServerAddress, SMTPServerDataStream, SMTPServerOptions, SMTPServerSession } from 'smtp-server';
import type { Config } from '../config/schema.ts';
import type { Logger } from '../log/logger.ts';
import { parsePath, isRoutingTrick, type Mailbox } from '../policy/address.ts';
import { checkRelay, InternalNetworks } from '../policy/relay-control.ts';
import { verifyPassword } from '../console/auth.ts';
import { hasNullMx } from '../delivery/mx.ts';
import type { DnsResolver } from '../dns/resolver.ts';

const MAX_AUTH_FAILURES = 3;
const AUTH_FAILURE_DELAY_MS = 1000;
/** A valid scrypt hash of a random password: checked for unknown names, so they take as long. */
const DUMMY_HASH = 'scrypt$16384$8$1$bW9hdC1kdW1teS1zYWx0$3q3dXq0SxwY3l9i6y2uQ8x5l0bG7aJ8n2kz3v4w5x6Y=';
import type { RecipientDirectory } from '../policy/recipients.ts';
import { SpoolError, type Envelope, type QueuedMessage, type Spool } from '../queue/spool.ts';
import { MoatSMTPServer, type ConnectionHandle, type ServerHooks } from './server-hooks.ts';
import { receivedHeader } from './received.ts';
import { Chain, type Verdict } from '../scan/pipeline.ts';
import { bareLineEndingsText, longLineText } from '../scan/guard.ts';
import { tooBigText } from '../scan/size.ts';
import type { ScanService } from '../scan/build.ts';
import { headerTooBigText, mimeTooComplexText } from '../scan/mime.ts';
import { blockedAttachmentText } from '../scan/attachments.ts';
import { ruleRejectText } from '../scan/rules.ts';
import { clamdUnavailableText, virusFoundText } from '../scan/clamd.ts';
import { PolicyReplies, type Policy } from '../policy/policy.ts';

type ParsedAddress = SMTPServerAddress & { raw?: string };
type Session = SMTPServerSession & { moat?: { from: Mailbox | null; rcpts: string[] } };

export type InboundDeps = {
  config: Config;
  spool: Spool;
  recipients: RecipientDirectory;
  /** DNS for the outbound recipient check (null MX); without it RCPT does not look. */
  resolve?: DnsResolver['resolve'];
  /** Builds the scan stages of each message. */
  scan: ScanService;
  log: Logger;
  /** Called with each message once it is durable. */
  accepted: (m: QueuedMessage) => void;
  tls?: { key: Buffer; cert: Buffer };
  /** The anti-abuse policy (policy/policy.ts); without it no policy checks run. */
  policy?: Policy;
};

/** A reply error as smtp-server expects it: the code, and text that starts with the enhanced code. */
export function reply(code: number, text: string): Error & { responseCode: number } {
  return Object.assign(new Error(text), { responseCode: code });
}

export const Replies = {
  relayDenied: () => reply(554, '5.7.1 Relay rejected for policy reasons'),
  badSender: () => reply(553, '5.1.7 Bad sender address syntax'),
  badRecipient: () => reply(501, '5.1.3 Bad recipient address syntax'),
  unknownUser: () => reply(550, '5.1.1 Recipient address rejected: user unknown'),
  verifyUnavailable: () => reply(451, '4.4.3 Recipient verification unavailable, try again later'),
  noRoom: () => reply(452, '4.3.1 Insufficient system storage, try again later'),
  localError: () => reply(451, '4.3.0 Local error in processing, try again later'),
  tooBig: (limit: number) => reply(552, tooBigText(limit)),
  bareLineEndings: () => reply(550, bareLineEndingsText),
  longLine: () => reply(550, longLineText),
  headerTooBig: () => reply(552, headerTooBigText),
  mimeTooComplex: () => reply(550, mimeTooComplexText),
  blockedAttachment: (what: string) => reply(550, blockedAttachmentText(what)),
  ruleRejected: (name: string) => reply(550, ruleRejectText(name)),
  virusFound: (name: string) => reply(550, virusFoundText(name)),
  scannerUnavailable: () => reply(451, clamdUnavailableText),
  sessionDeadline: '4.4.2 Session time limit reached, closing connection',
  authFailed: () => reply(535, '5.7.8 Authentication credentials invalid'),
  nullMx: () => reply(556, '5.1.10 Recipient address has null MX'),
  authTooMany: '4.7.0 Too many failed authentications, closing connection',
} as const;

export function createInbound(deps: InboundDeps): MoatSMTPServer {
  const { config, spool, recipients, log, policy } = deps;
  const ib = config.inbound;
  const localDomains = new Set(ib.localDomains);
  const internalNetworks = new InternalNetworks(config.internal.networks);
  const users = new Map(config.outbound.users.map((u) => [u.name.toLowerCase(), u]));
  const authFailures = new Map<string, number>();

  const options: SMTPServerOptions = {
    name: config.hostname,
    banner: 'moat',
    size: ib.maxMessageSize,
    maxClients: ib.maxConnections,
    socketTimeout: ib.idleTimeoutMs,
    closeTimeout: 10_000,
    disableReverseLookup: true,
    authOptional: true,
    // AUTH only with users configured, and only after STARTTLS (538 before it)
    disabledCommands: deps.tls ? (users.size ? [] : ['AUTH']) : ['AUTH', 'STARTTLS'],
    authMethods: ['PLAIN', 'LOGIN'],
    allowInsecureAuth: false,
    hideSTARTTLS: !deps.tls,
    hideENHANCEDSTATUSCODES: false,
    hideDSN: true,
    hidePIPELINING: false,
    hide8BITMIME: false,
    hideSize: false,
    hideREQUIRETLS: true,
    hideSMTPUTF8: true,
    maxRecipients: ib.maxRecipients,
    logger: false,
    ...(deps.tls ? { key: deps.tls.key, cert: deps.tls.cert } : {}),

    onAuth(auth, session, cb) {
      void (async () => {
        const name = String(auth.username ?? '');
        const user = users.get(name.toLowerCase());
        // an unknown name costs the same scrypt work as a known one
        const ok = await verifyPassword(String(auth.password ?? ''), user?.passwordHash ?? DUMMY_HASH);
        const ctx = { cid: session.id, ip: session.remoteAddress, phase: 'auth', method: auth.method };
        if (ok && user) {
          log.info({ ev: 'auth', ...ctx, user: user.name }, 'authenticated');
          return cb(null, { user: user.name });
        }
        const failures = (authFailures.get(session.id) ?? 0) + 1;
        authFailures.set(session.id, failures);
        log.warn({ ev: 'auth-failed', ...ctx, user: name.slice(0, 64), failures }, 'authentication failed');
        // a failure is answered slowly, and the third one in a session ends it
        await new Promise((r) => setTimeout(r, AUTH_FAILURE_DELAY_MS));
        if (failures >= MAX_AUTH_FAILURES) {
          authFailures.delete(session.id);
          return cb(Object.assign(reply(421, Replies.authTooMany), { responseCode: 421 }));
        }
        cb(Replies.authFailed());
      })();
    },

    onConnect(session, cb) {
      log.info({ ev: 'connect', cid: session.id, ip: session.remoteAddress }, 'connect');
      if (!policy) return cb();
      policy.connect(session.id).then((refused) => cb(refused ?? undefined), () => cb(PolicyReplies.checkFailed()));
    },

    onMailFrom(address, session: Session, cb) {
      void (async () => {
        const parsed = parsePath((address as ParsedAddress).raw ?? '', { allowNull: true });
        if (!parsed.ok) {
          log.info({ ev: 'reject', cid: session.id, ip: session.remoteAddress, phase: 'mail', reason: parsed.refusal }, 'reject');
          return cb(Replies.badSender());
        }
        const refused = await policy?.mail(session.id, parsed.mailbox);
        if (refused) return cb(refused);
        const announced = Number(argsOf(address).SIZE ?? 0) || 0;
        let room = false;
        try {
          room = await spool.hasRoom(announced);
        } catch (e) {
          log.error({ err: (e as Error).message }, 'spool: cannot check free space');
        }
        if (!room) {
          log.warn({ ev: 'reject', cid: session.id, ip: session.remoteAddress, phase: 'mail', reason: 'spool-full' }, 'reject');
          return cb(Replies.noRoom());
        }
        session.moat = { from: parsed.mailbox, rcpts: [] };
        cb();
      })();
    },

    onRcptTo(address, session: Session, cb) {
      void (async () => {
        const ctx = { cid: session.id, ip: session.remoteAddress, phase: 'rcpt' };
        const parsed = parsePath((address as ParsedAddress).raw ?? '', { allowNull: false });
        if (!parsed.ok) {
          const trick = isRoutingTrick(parsed.refusal);
          log.info({ ev: 'reject', ...ctx, reason: parsed.refusal }, 'reject');
          return cb(trick ? (policy?.relayRefused(session.id) ?? Replies.relayDenied()) : Replies.badRecipient());
        }
        let mailbox = parsed.mailbox!;
        // RFC 5321 §4.5.1: <Postmaster> without a domain reaches the postmaster of the first local domain
        if (mailbox.domain === '') mailbox = { local: 'postmaster', domain: ib.localDomains[0]!, address: `postmaster@${ib.localDomains[0]}` };
        const relay = checkRelay(mailbox, localDomains, internalNetworks.has(session.remoteAddress) || Boolean(session.user));
        if (relay.verdict !== 'permit') {
          log.info({ ev: 'reject', ...ctx, reason: relay.reason, domain: mailbox.domain }, 'reject');
          return cb(policy?.relayRefused(session.id) ?? Replies.relayDenied());
        }
        const refused = await policy?.rcpt(session.id, mailbox);
        if (refused) return cb(refused);
        // outbound: a domain that publishes a null MX takes no mail (RFC 7505): refuse now, not bounce later
        if (relay.reason === 'internal-network' && deps.resolve && (await hasNullMx(mailbox.domain, deps.resolve))) {
          log.info({ ev: 'reject', ...ctx, reason: 'null-mx', domain: mailbox.domain }, 'reject');
          return cb(Replies.nullMx());
        }
        // outbound (an internal client, a foreign domain): the recipient is the next hop's to judge
        const check = relay.reason === 'internal-network' ? { verdict: 'accept' as const } : await recipients.check(mailbox.address);
        if (check.verdict === 'unknown') {
          log.info({ ev: 'reject', ...ctx, reason: 'unknown-recipient', source: check.source }, 'reject');
          return cb(policy?.unknownRecipient(session.id) ?? Replies.unknownUser());
        }
        if (check.verdict !== 'accept') {
          log.warn({ ev: 'tempfail', ...ctx, reason: 'verify-unavailable', detail: check.detail }, 'tempfail');
          return cb(Replies.verifyUnavailable());
        }
        // a repeated recipient is accepted once (smtp-server keeps one entry too)
        const rcpts = session.moat?.rcpts;
        if (rcpts && !rcpts.some((r) => r.toLowerCase() === mailbox.address.toLowerCase())) rcpts.push(mailbox.address);
        cb();
      })();
    },

    onData(stream: SMTPServerDataStream, session: Session, cb) {
      receive(stream, session).then(
        (m) => {
          cb(null, `2.0.0 Ok: queued as ${m.id}`);
          deps.accepted(m);
        },
        (e: Error & { responseCode?: number }) => cb(e.responseCode ? e : Replies.localError()),
      );
    },
  };

  async function receive(stream: SMTPServerDataStream, session: Session): Promise<QueuedMessage> {
    const ctx = { cid: session.id, ip: session.remoteAddress };
    const st = session.moat;
    const inc = spool.begin();
    const envelope: Envelope = {
      from: st?.from?.address ?? '',
      to: st?.rcpts.slice() ?? [],
      arrivedAt: Date.now(),
      client: { address: session.remoteAddress, helo: session.hostNameAppearsAs ?? '', tls: Boolean(session.secure) },
      bodyType: session.envelope.mailFrom && argsOf(session.envelope.mailFrom).BODY?.toUpperCase() === '8BITMIME' ? '8BITMIME' : '7BIT',
    };
    inc.write([receivedHeader({ hostname: config.hostname, id: inc.id, envelope, date: new Date(envelope.arrivedAt) })]);
    // the sink: each chunk goes into the spool by reference
    const stages = [...deps.scan.stages(ctx), ...(policy?.dataStages(session.id) ?? [])];
    const chain = new Chain(stages, (chunk) => inc.failure !== null || inc.write([chunk]));
    let verdict: Verdict | null;
    try {
      await pump(stream, chain, () => inc.drained());
      verdict = await chain.finish();
    } catch (e) {
      chain.abort();
      inc.abort();
      throw e;
    }
    if (verdict) {
      inc.abort();
      const fields = { ev: verdict.code >= 500 ? 'reject' : 'tempfail', ...ctx, phase: 'data', stage: verdict.stage, reason: verdict.reason };
      if (verdict.code >= 500) log.info(fields, 'reject');
      else log.warn(fields, 'tempfail');
      throw reply(verdict.code, verdict.text);
    }
    const added = chain.headers();
    if (added) envelope.headers = added;
    // the policy's data chain (policy/policy.ts) on the message read back from the
    // spool: it may refuse the message, and adds header fields (Authentication-Results, X-Spam-*)
    if (policy && (await inc.settle().then(() => true, () => false))) {
      const p = await policy.dataEnd(session.id, () => inc.readBack(), envelope.to);
      if (p.reply) {
        inc.abort();
        throw p.reply;
      }
      if (p.headers) envelope.headers = (envelope.headers ?? '') + p.headers;
    }
    try {
      const m = await inc.commit(envelope);
      log.info({ ev: 'accept', ...ctx, queueId: m.id, from: envelope.from, rcpts: envelope.to.length, size: m.size }, 'accept');
      return m;
    } catch (e) {
      const full = e instanceof SpoolError && e.code === 'full';
      log.error({ ev: 'tempfail', ...ctx, phase: 'data', reason: full ? 'spool-full' : 'spool-io', err: (e as Error).message }, 'tempfail');
      throw full ? Replies.noRoom() : Replies.localError();
    }
  }

  // what the anti-abuse policy adds to the protocol (smtp/server-hooks.ts points 1, 4, 5)
  const hooks: ServerHooks = policy
    ? {
        onEarlyTalker: (c) => policy.earlyTalker(c),
        onHelo: (name, c, done) => policy.helo(c.id, name).then((r) => done(r ?? undefined), () => done(PolicyReplies.checkFailed())),
        maxErrors: config.policy.maxErrors,
      }
    : {};
  const server = new MoatSMTPServer(options, ib.pregreetMs, (c: ConnectionHandle) => {
    const t = setTimeout(() => {
      log.info({ ev: 'deadline', cid: c.id, ip: c.remoteAddress }, 'session deadline reached');
      c.closeWith(421, Replies.sessionDeadline);
    }, ib.sessionDeadlineMs);
    t.unref();
    const closed = policy?.opened(c); // the policy counts connections per address
    return () => (clearTimeout(t), closed?.(), authFailures.delete(c.id));
  }, hooks);
  server.on('error', (err: Error & { code?: string }) => {
    log.debug({ ev: 'client-error', code: err.code, err: err.message }, 'client connection error');
  });
  return server;
}

/**
 * Moves the DATA stream through the scan chain into the spool chunk by chunk,
 * pausing the client while the spool is behind. Always reads the stream to its
 * end, even after a spool failure or a refusal, so the dialogue can go on with
 * a reply.
 */
function pump(stream: Readable, chain: Chain, drained: () => Promise<void>): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.on('data', (chunk: Buffer) => {
      if (!chain.push(chunk)) {
        stream.pause();
        void chain.drained(drained).then(() => stream.resume());
      }
    });
    stream.once('end', resolve);
    stream.once('error', reject);
  });
}

export function loadTls(cfg: Config['inbound']['tls']): { key: Buffer; cert: Buffer } | undefined {
  if (!cfg) return undefined;
  return { key: readFileSync(cfg.keyFile), cert: readFileSync(cfg.certFile) };
}

function argsOf(a: SMTPServerAddress): Record<string, string | undefined> {
  return (a.args || {}) as Record<string, string | undefined>;
}
