/*
 * policy/checks/helo.ts: the HELO/EHLO name: syntax (a host name with a dot,
 * or an address literal in brackets), a bare IP address without brackets, and
 * a client that claims to be us (our host name, one of our domains, or our own
 * address). Each has an action (reject, tempfail, tag, ignore).
 *
 * Runs at HELO/EHLO (the reply to it), or later in the mail or rcpt chain
 * when listed there. Must never put the client's name in a reply. Listed as `helo`.
 */
import { isIP } from 'node:net';
import { byAction, CONTINUE, type Check } from '../chain.ts';
import type { CheckServices } from '../registry.ts';
import { PolicyReplies } from '../replies.ts';

const HOST = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/i;

/** The address inside an address literal ("[192.0.2.1]", "[IPv6:2001:db8::1]"), or null. */
export function literalAddress(helo: string): string | null {
  const m = /^\[(?:IPv6:)?([0-9A-Fa-f:.]+)\]$/i.exec(helo);
  if (!m) return null;
  const v6 = /^\[IPv6:/i.test(helo);
  const v = isIP(m[1]!);
  return (v6 ? v === 6 : v === 4) ? m[1]!.toLowerCase() : null;
}

export function heloCheck(s: CheckServices): Check {
  const cfg = s.config.policy.helo;
  const hostname = s.config.hostname.toLowerCase();
  return {
    name: 'helo',
    run(ctx) {
      if (ctx.internal) return CONTINUE;
      const helo = ctx.helo.toLowerCase();
      if (isIP(helo)) {
        if (helo === ctx.localAddress.toLowerCase() && helo !== ctx.ip.toLowerCase() && cfg.claimsUs !== 'ignore') return byAction(cfg.claimsUs, PolicyReplies.heloClaimsUs(), 'helo-our-address', cfg.score);
        return byAction(cfg.bareIp, PolicyReplies.heloBareIp(), 'helo-bare-ip', cfg.score);
      }
      const literal = literalAddress(helo);
      if (literal) {
        // our address, unless it is the client's own too (loopback): an honest literal names the client
        if (literal === ctx.localAddress.toLowerCase() && literal !== ctx.ip.toLowerCase())
          return byAction(cfg.claimsUs, PolicyReplies.heloClaimsUs(), 'helo-our-address', cfg.score);
        return CONTINUE;
      }
      if (!HOST.test(helo)) return byAction(cfg.syntax, PolicyReplies.heloSyntax(), 'helo-syntax', cfg.score);
      const name = helo.replace(/\.$/, '');
      if (name === hostname || s.localDomains.has(name)) return byAction(cfg.claimsUs, PolicyReplies.heloClaimsUs(), 'helo-claims-us', cfg.score);
      return CONTINUE;
    },
  };
}
