/*
 * delivery/outbound.ts: mail for the Internet, delivered by MX.
 *
 * For each destination domain of a message (one transaction per domain, with
 * all of its recipients), delivery/mx.ts gives the hosts in RFC 5321 order;
 * every address of each host is tried in turn until one takes the
 * transaction. A refused connection, a timeout, a failed STARTTLS or a 4xx for
 * the whole transaction moves on to the next address; a 5xx is final for the
 * recipients it names. STARTTLS is used whenever offered (certificates are not
 * verified: opportunistic TLS, RFC 7435); the TLS outcome is logged.
 * DNS trouble defers; a domain that does not exist, has a null MX (RFC 7505)
 * or no address fails its recipients (the queue sends the DSN). Mail from a
 * sender domain with a key in outbound.dkim is DKIM-signed (mailauth) before
 * it leaves; a signing failure defers rather than send it unsigned. Header
 * fields named in outbound.removeHeaders (the Received trail, client address
 * fields) are removed first: topology hiding, and the signature covers what is
 * sent.
 *
 * Must never: deliver to an address that DNS did not name for the domain,
 * retry a 5xx, let one domain's trouble decide another's. Called by
 * queue/manager.ts for recipients outside the local domains (only clients in
 * internal.networks can give it any: relay control refuses everyone else).
 */
import { isIP } from 'node:net';
import type { Logger } from '../log/logger.ts';
import { SmtpClient } from './smtp-client.ts';
import { sendTransaction, type DeliveryJob, type DeliveryResult, type RcptOutcome } from './internal.ts';
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
  resolve: DnsResolver['resolve'];
  log: Logger;
};

const PERMANENT_TEXT = {
  'no-such-domain': '5.1.2',
  'null-mx': '5.1.10',
  'no-address': '5.4.4',
  'mx-loop': '5.4.6',
} as const;

export class OutboundDelivery {
  readonly #o: OutboundOptions;

  constructor(o: OutboundOptions) {
    this.#o = o;
  }

  async deliver(job: DeliveryJob): Promise<DeliveryResult> {
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
        return { server: null, outcomes: job.to.map(() => ({ status: 'deferred', reply })) };
      }
      const prefix = Buffer.from(signature, 'latin1');
      const open = job.open;
      job = { ...job, size: job.size + prefix.length, open: () => withPrefix(prefix, open()) };
    }
    const byDomain = new Map<string, number[]>();
    job.to.forEach((a, i) => {
      const d = a.slice(a.lastIndexOf('@') + 1).toLowerCase();
      byDomain.set(d, [...(byDomain.get(d) ?? []), i]);
    });
    const outcomes: RcptOutcome[] = new Array(job.to.length);
    await Promise.all(
      [...byDomain].map(async ([domain, idx]) => {
        const r = await this.#domain({ ...job, to: idx.map((i) => job.to[i]!) }, domain);
        idx.forEach((i, k) => (outcomes[i] = r[k]!));
      }),
    );
    return { server: null, outcomes };
  }

  async #domain(job: DeliveryJob, domain: string): Promise<RcptOutcome[]> {
    const o = this.#o;
    const all = (status: RcptOutcome['status'], reply: string) => job.to.map(() => ({ status, reply }));
    const mx = await resolveMx(domain, o.resolve, { self: [o.hostname] });
    if (mx.kind === 'temporary') return all('deferred', `4.4.3 ${mx.text}`);
    if (mx.kind === 'permanent') {
      o.log.info({ ev: 'mx', queueId: job.id, domain, outcome: mx.reason }, 'no way to deliver to this domain');
      return all('failed', `${PERMANENT_TEXT[mx.reason]} ${mx.text}`);
    }
    let lastReply = `4.4.1 no MX host of ${domain} answered`;
    for (const host of mx.hosts) {
      for (const address of host.addresses) {
        const label = `${host.host}[${address}]`;
        let conn: SmtpClient;
        try {
          conn = await SmtpClient.connect({
            host: address,
            port: o.port,
            heloName: o.hostname,
            tls: 'opportunistic',
            rejectUnauthorized: false,
            ...(isIP(host.host) ? {} : { servername: host.host }),
            connectTimeoutMs: o.connectTimeoutMs,
            commandTimeoutMs: o.commandTimeoutMs,
          });
        } catch (e) {
          lastReply = `4.4.1 ${label}: ${(e as Error).message}`;
          o.log.info({ ev: 'deliver-attempt', queueId: job.id, server: label, err: (e as Error).message }, 'MX host unreachable');
          continue;
        }
        const r = await sendTransaction(conn, job);
        o.log.info({ ev: 'deliver-attempt', queueId: job.id, server: label, tls: conn.secure, reply: r.reply, outcome: r.kind }, 'delivery attempt');
        void conn.quit();
        if (r.kind === 'done') return r.outcomes;
        lastReply = `${label}: ${r.reply}`;
      }
    }
    return all('deferred', lastReply);
  }
}
