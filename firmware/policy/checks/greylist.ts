/*
 * policy/checks/greylist.ts: greylisting (off unless listed in the rcpt chain).
 *
 * The first delivery attempt of a (client network, sender, recipient) triplet
 * is answered 450 4.7.1; a retry after policy.greylist.delayMs and within
 * retryWindowMs passes, and the triplet then passes at once for passMs after
 * its last use. The client network is the /24 (IPv4) or /64 (IPv6), because
 * large senders retry from another host of the same pool. At most maxEntries
 * triplets are kept, the oldest forgotten first; memory only, in the abuse
 * tracker, so a configuration commit keeps them.
 *
 * Must never greylist internal clients. Listed in the rcpt chain as `greylist`.
 */
import { isIP } from 'node:net';
import { CONTINUE, type Check } from '../chain.ts';
import type { CheckServices } from '../registry.ts';
import { PolicyReplies } from '../replies.ts';

/** 192.0.2.77 → 192.0.2; 2001:db8:1:2:3:4:5:6 → its first four groups. */
export function clientNetwork(ip: string): string {
  if (isIP(ip) === 4) return ip.slice(0, ip.lastIndexOf('.'));
  if (isIP(ip) !== 6) return ip;
  const [head = '', tail] = ip.toLowerCase().split('::');
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  return groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':');
}

export function greylistCheck(s: CheckServices): Check {
  const g = s.config.policy.greylist;
  const now = s.now;
  const seen = s.tracker.greylist;
  return {
    name: 'greylist',
    run(ctx) {
      if (ctx.internal || !ctx.tx.rcpt) return CONTINUE;
      const key = `${clientNetwork(ctx.ip)}/${(ctx.tx.from?.address ?? '').toLowerCase()}/${ctx.tx.rcpt.address.toLowerCase()}`;
      const t = now();
      let e = seen.get(key);
      if (e && (e.passedAt !== null ? t - e.passedAt > g.passMs : t - e.first > g.retryWindowMs)) e = undefined;
      if (!e) {
        seen.delete(key);
        seen.set(key, { first: t, passedAt: null });
        while (seen.size > g.maxEntries) seen.delete(seen.keys().next().value as string);
        return { action: 'tempfail', reply: PolicyReplies.greylisted(), reason: 'first attempt' };
      }
      if (e.passedAt === null && t - e.first < g.delayMs) return { action: 'tempfail', reply: PolicyReplies.greylisted(), reason: 'retried too early' };
      e.passedAt = t;
      return { action: 'continue', reason: 'greylist passed' };
    },
  };
}
