/*
 * delivery/outbound.ts: mail for the Internet, delivered by MX (or through
 * one smart host).
 *
 * For each destination domain of a message (one transaction per domain, with
 * all of its recipients) a connection kept idle from the last transaction to
 * that domain is used first (RSET, delivery/idle-connections.ts); otherwise
 * delivery/mx.ts gives the hosts in RFC 5321 order and every address of each
 * host is tried in turn until one takes the transaction. A refused connection,
 * a timeout, a failed STARTTLS or a 4xx for the whole transaction moves on to
 * the next address; a 5xx is final for the recipients it names. TLS follows
 * outbound.tls per domain: none, may (STARTTLS whenever offered, certificate
 * not checked: opportunistic TLS, RFC 7435) or verify (STARTTLS required, the
 * chain and the MX host name must verify, else the host is left and the mail
 * deferred); protocol, cipher and verification are logged with each attempt.
 * With outbound.mtaSts, a domain whose MTA-STS policy (RFC 8461,
 * delivery/mta-sts.ts) is `enforce` gets only the MX hosts the policy names,
 * and only over verified TLS (else deferred); `testing` is logged only.
 * With outbound.smartHost every domain goes to that one relay instead, with
 * its TLS level and AUTH (the password never logged).
 * DNS trouble defers; a domain that does not exist, has a null MX (RFC 7505)
 * or no address fails its recipients (the queue sends the DSN). A domain for
 * which no host could even be reached is reported as unreachable, so that the
 * queue holds back its other mail for a while (queue/destinations.ts).
 * Mail from a sender domain with a key in outbound.dkim is DKIM-signed
 * (mailauth) before it leaves; a signing failure defers rather than send it
 * unsigned. Header fields named in outbound.removeHeaders (the Received
 * trail, client address fields) are removed first: topology hiding, and the
 * signature covers what is sent.
 *
 * Must never: deliver to an address that DNS did not name for the domain (or
 * to anything but the smart host), retry a 5xx, let one domain's trouble
 * decide another's, reuse a connection across destinations, send a smart-host
 * password without TLS unless allowed. Called by queue/manager.ts for
 * recipients outside the local domains (only clients in internal.networks or
 * authenticated ones can give it any: relay control refuses everyone else).
 */
import { isIP } from 'node:net';
import type { Logger } from '../log/logger.ts';
import { SmtpClient, type ClientOptions, type SmtpClientError } from './smtp-client.ts';
import { IdleConnections } from './idle-connections.ts';
import { mxAllowed, type MtaStsPolicies } from './mta-sts.ts';
import { sendTransaction, type Attempt, type DeliveryJob, type DeliveryResult, type RcptOutcome } from './internal.ts';
import { resolveMx } from './mx.ts';
import type { DnsResolver } from '../dns/resolver.ts';
import { PassThrough, pipeline, type Readable } from 'node:stream';
import { HeaderStripper } from './topology.ts';
import { dkimSign } from 'mailauth';

/** The stored message with header fields in front of it (a DKIM-Signature). */
function withPrefix(prefix: Buffer, inner: Readable): Readable {
  const out = new PassThrough({ highWaterMark: 64 * 1024 });
  out.write(prefix);
  inner.on('error', (e) => out.destroy(e));
  out.on('close', () => inner.destroy());
  inner.pipe(out);
  return out;
}

/** A DKIM key for mail from one sender domain. */
export type DkimKey = { domain: string; selector: string; privateKey: string };

export type TlsPolicy = 'none' | 'may' | 'verify';

export type SmartHost = {
  host: string;
  port: number;
  tls: 'none' | 'may' | 'encrypt' | 'verify';
  auth?: { user: string; pass: string; allowPlaintext: boolean };
};

export type OutboundOptions = {
  hostname: string;
  /** Header fields removed from outgoing mail (topology hiding; delivery/topology.ts). */
  removeHeaders?: readonly string[];
  /** Keys by lower-case sender domain: mail from there is signed (mailauth's dkimSign, relaxed/relaxed). */
  dkim?: ReadonlyMap<string, DkimKey>;
  /** Port of the receiving MX servers: 25 (anything else is for tests). */
  port: number;
  connectTimeoutMs: number;
  commandTimeoutMs: number;
  /** TLS per destination domain (lower case), and for the rest; ca replaces the system's CAs for verify. */
  tls?: { default: TlsPolicy; domains?: ReadonlyMap<string, TlsPolicy>; ca?: string };
  /** Idle connections kept for reuse: how long, how many per destination, how many in all. */
  idle?: { idleMs: number; maxPerDestination: number; maxTotal: number };
  /** All mail to this relay instead of MX delivery. */
  smartHost?: SmartHost;
  /** MTA-STS (RFC 8461): a domain's `enforce` policy limits its MX hosts to those it names and requires verified TLS. */
  mtaSts?: MtaStsPolicies;
  resolve: DnsResolver['resolve'];
  log: Logger;
};

/** The result, plus the destinations (outbound.destinationOf) where no host could be reached at all. */
export type OutboundResult = DeliveryResult & { unreachable: string[] };

const PERMANENT_TEXT = {
  'no-such-domain': '5.1.2',
  'null-mx': '5.1.10',
  'no-address': '5.4.4',
  'mx-loop': '5.4.6',
} as const;

/** Name under which a smart host's destination is queued and its connections kept. */
const SMART_HOST_KEY = '[smart host]';

type Route = { kind: 'hosts'; hosts: Array<{ host: string; addresses: string[] }>; enforce?: boolean } | { kind: 'done'; outcomes: RcptOutcome[]; unreachable: boolean };

export class OutboundDelivery {
  readonly #o: OutboundOptions;
  readonly #idle: IdleConnections;
  /** Where each kept connection goes, for the log. */
  readonly #labels = new WeakMap<SmtpClient, string>();

  constructor(o: OutboundOptions) {
    this.#o = o;
    const idle = o.idle ?? { idleMs: 0, maxPerDestination: 0, maxTotal: 0 };
    this.#idle = new IdleConnections({ idleMs: idle.idleMs, maxPerKey: idle.maxPerDestination, maxTotal: idle.maxTotal });
  }

  /** The queue's destination for a recipient domain: the domain itself, or the smart host. */
  destinationOf(domain: string): string {
    return this.#o.smartHost ? SMART_HOST_KEY : domain.toLowerCase();
  }

  /** Idle connections kept now. */
  get idleConnections(): number {
    return this.#idle.size;
  }

  /** Closes the idle connections; nothing is kept after this. */
  close(): void {
    this.#idle.close();
  }

  async deliver(job: DeliveryJob): Promise<OutboundResult> {
    const hide = this.#o.removeHeaders ?? [];
    if (hide.length) {
      const stored = job.open;
      job = { ...job, open: () => pipeline(stored(), new HeaderStripper(hide), () => undefined) };
    }
    const key = this.#o.dkim?.get(job.from.slice(job.from.lastIndexOf('@') + 1).toLowerCase());
    if (key && job.from.includes('@')) {
      // sign once per attempt, over the message as stored (a second read of the spool)
      let signature: string;
      try {
        const r = await dkimSign(job.open(), { canonicalization: 'relaxed/relaxed', signatureData: [{ signingDomain: key.domain, selector: key.selector, privateKey: key.privateKey }] } as never);
        if (r.errors.length || !r.signatures) throw new Error(String((r.errors[0] as { message?: string } | undefined)?.message ?? 'no signature'));
        signature = r.signatures;
      } catch (e) {
        // unsigned mail from a domain that signs would fail DMARC at the receiver: retry later instead
        const reply = `4.3.0 DKIM signing failed: ${(e as Error).message}`;
        this.#o.log.error({ ev: 'dkim-sign', queueId: job.id, domain: key.domain, err: (e as Error).message }, 'DKIM signing failed');
        return { server: null, outcomes: job.to.map(() => ({ status: 'deferred', reply })), unreachable: [] };
      }
      const prefix = Buffer.from(signature, 'latin1');
      const open = job.open;
      job = { ...job, size: job.size + prefix.length, open: () => withPrefix(prefix, open()) };
    }
    const byDest = new Map<string, number[]>();
    job.to.forEach((a, i) => {
      const d = this.destinationOf(a.slice(a.lastIndexOf('@') + 1));
      byDest.set(d, [...(byDest.get(d) ?? []), i]);
    });
    const outcomes: RcptOutcome[] = new Array(job.to.length);
    const unreachable: string[] = [];
    await Promise.all(
      [...byDest].map(async ([dest, idx]) => {
        const r = await this.#destination({ ...job, to: idx.map((i) => job.to[i]!) }, dest);
        idx.forEach((i, k) => (outcomes[i] = r.outcomes[k]!));
        if (r.unreachable) unreachable.push(dest);
      }),
    );
    return { server: null, outcomes, unreachable };
  }

  /** Where mail for dest may go: the smart host, or the MX hosts. */
  async #route(job: DeliveryJob, dest: string): Promise<Route> {
    const o = this.#o;
    const all = (status: RcptOutcome['status'], reply: string, unreachable: boolean): Route => ({ kind: 'done', outcomes: job.to.map(() => ({ status, reply })), unreachable });
    const sh = o.smartHost;
    if (sh) {
      if (isIP(sh.host)) return { kind: 'hosts', hosts: [{ host: sh.host, addresses: [sh.host] }] };
      const found = await Promise.allSettled([o.resolve(sh.host, 'A'), o.resolve(sh.host, 'AAAA')]);
      const addresses = found.flatMap((r) => (r.status === 'fulfilled' ? (r.value as unknown[]).filter((x): x is string => typeof x === 'string') : []));
      if (!addresses.length) return all('deferred', `4.4.3 smart host ${sh.host} has no address (or DNS failed)`, true);
      return { kind: 'hosts', hosts: [{ host: sh.host, addresses }] };
    }
    const mx = await resolveMx(dest, o.resolve, { self: [o.hostname] });
    if (mx.kind === 'temporary') return all('deferred', `4.4.3 ${mx.text}`, true);
    if (mx.kind === 'permanent') {
      o.log.info({ ev: 'mx', queueId: job.id, domain: dest, outcome: mx.reason }, 'no way to deliver to this domain');
      return all('failed', `${PERMANENT_TEXT[mx.reason]} ${mx.text}`, false);
    }
    if (!o.mtaSts) return mx;
    const sts = await o.mtaSts.policyFor(dest);
    if (sts.mode === 'none') {
      if (sts.error) o.log.info({ ev: 'mta-sts', queueId: job.id, domain: dest, err: sts.error }, 'MTA-STS policy unavailable; delivering without it');
      return mx;
    }
    const allowed = mx.hosts.filter((h) => mxAllowed(h.host, sts));
    const outside = mx.hosts.filter((h) => !allowed.includes(h)).map((h) => h.host);
    o.log.info({ ev: 'mta-sts', queueId: job.id, domain: dest, mode: sts.mode, id: sts.id, ...(outside.length ? { notInPolicy: outside } : {}), ...(sts.error ? { err: sts.error } : {}) }, 'MTA-STS policy');
    if (sts.mode === 'testing') return mx; // report only
    if (!allowed.length) return all('deferred', `4.7.5 no MX host of ${dest} is named by its MTA-STS policy (${outside.join(', ')})`, true);
    return { kind: 'hosts', hosts: allowed, enforce: true };
  }

  #clientOptions(dest: string, host: string, address: string, enforce: boolean): ClientOptions {
    const o = this.#o;
    const sh = o.smartHost;
    const level = sh ? sh.tls : enforce ? 'verify' : (o.tls?.domains?.get(dest) ?? o.tls?.default ?? 'may');
    const verify = level === 'verify';
    return {
      host: address,
      port: sh ? sh.port : o.port,
      heloName: o.hostname,
      tls: level === 'none' ? 'none' : level === 'may' ? 'opportunistic' : 'required',
      rejectUnauthorized: verify,
      ...(verify && o.tls?.ca ? { ca: o.tls.ca } : {}),
      ...(isIP(host) ? {} : { servername: host }),
      connectTimeoutMs: o.connectTimeoutMs,
      commandTimeoutMs: o.commandTimeoutMs,
      ...(sh?.auth ? { auth: sh.auth } : {}),
    };
  }

  async #destination(job: DeliveryJob, dest: string): Promise<{ outcomes: RcptOutcome[]; unreachable: boolean }> {
    const o = this.#o;
    // a connection kept from the last transaction to this destination
    const kept = this.#idle.take(dest);
    if (kept) {
      const label = this.#labels.get(kept) ?? dest;
      const r = await sendTransaction(kept, job);
      this.#logAttempt(job, label, kept, r, true);
      await this.#idle.put(dest, kept, r.reusable);
      if (r.kind === 'done') return { outcomes: r.outcomes, unreachable: false };
    }
    const route = await this.#route(job, dest);
    if (route.kind === 'done') return route;
    let lastReply = `4.4.1 no host for ${dest} answered`;
    let reached = false;
    for (const host of route.hosts) {
      for (const address of host.addresses) {
        const label = `${host.host}[${address}]`;
        let conn: SmtpClient;
        try {
          conn = await SmtpClient.connect(this.#clientOptions(dest, host.host, address, route.enforce === true));
        } catch (e) {
          const err = e as SmtpClientError;
          lastReply = `${err.code === 'EAUTH' ? '4.7.8' : '4.4.1'} ${label}: ${err.message}`;
          o.log.info({ ev: 'deliver-attempt', queueId: job.id, server: label, err: err.message }, 'host unreachable');
          continue;
        }
        reached = true;
        this.#labels.set(conn, label);
        const r = await sendTransaction(conn, job);
        this.#logAttempt(job, label, conn, r, false);
        await this.#idle.put(dest, conn, r.reusable);
        if (r.kind === 'done') return { outcomes: r.outcomes, unreachable: false };
        lastReply = `${label}: ${r.reply}`;
      }
    }
    return { outcomes: job.to.map(() => ({ status: 'deferred', reply: lastReply })), unreachable: !reached };
  }

  #logAttempt(job: DeliveryJob, label: string, conn: SmtpClient, r: Attempt, reused: boolean): void {
    const t = conn.tlsInfo;
    this.#o.log.info(
      {
        ev: 'deliver-attempt',
        queueId: job.id,
        server: label,
        tls: t ? `${t.protocol} ${t.cipher} ${t.verified ? 'verified' : 'unverified'}` : 'none',
        reused,
        reply: r.reply,
        outcome: r.kind,
      },
      'delivery attempt',
    );
  }
}
