/*
 * policy/replies.ts: every SMTP reply the anti-abuse policy can give, in one
 * table (documented in the README's reply table; test/docs.test.ts checks it).
 *
 * Texts carry their enhanced status code and never the client's own words
 * (no reflection of attacker-controlled text into the dialogue). Must never
 * be used for relay control, which answers through smtp/inbound.ts Replies.
 * Called by the checks in policy/checks/ and by policy/policy.ts.
 */
/** A reply error as smtp-server expects it (the same shape as smtp/inbound.ts reply()). */
export function reply(code: number, text: string): PolicyReply {
  return Object.assign(new Error(text), { responseCode: code });
}

export const PolicyReplies = {
  tooManyFromIp: () => reply(421, '4.7.0 Too many connections from your address, try again later'),
  connectionRate: () => reply(421, '4.7.0 Too many connections from your address in a short time, try again later'),
  blocked: () => reply(421, '4.7.0 Your address is temporarily blocked for abuse, try again later'),
  pregreet: () => reply(554, '5.7.1 Protocol violation: talked before the greeting'),
  tooManyErrors: () => reply(421, '4.7.0 Too many errors, closing connection'),
  dnsbl: (zone: string) => reply(554, `5.7.1 Service unavailable; client address listed by ${zone}`),
  heloSyntax: () => reply(501, '5.5.2 Invalid HELO/EHLO host name'),
  heloBareIp: () => reply(501, '5.5.2 HELO/EHLO address literal must be in brackets'),
  heloClaimsUs: () => reply(550, '5.7.1 HELO/EHLO claims to be this host'),
  senderDenied: () => reply(554, '5.7.1 Sender domain refused by policy'),
  spoofedSender: () => reply(550, '5.7.1 Sender address in a local domain is not accepted from outside'),
  spfFail: () => reply(550, '5.7.23 SPF validation failed'),
  spfTempfail: () => reply(451, '4.7.24 SPF validation error, try again later'),
  spfSoft: () => reply(550, '5.7.24 SPF validation did not pass'),
  messageRate: () => reply(450, '4.7.1 Too many messages from your address, try again later'),
  greylisted: () => reply(450, '4.7.1 Greylisted, please try again later'),
  harvest: () => reply(421, '4.7.0 Too many unknown recipients, closing connection'),
  relayAbuse: () => reply(421, '4.7.0 Too many relay attempts, closing connection'),
  dmarcReject: () => reply(550, '5.7.1 Message rejected by the DMARC policy of its author domain'),
  spam: () => reply(550, '5.7.1 Message rejected as spam'),
  checkFailed: () => reply(451, '4.7.0 Policy check unavailable, try again later'),
  tempfailByConfig: () => reply(451, '4.7.1 Deferred by local policy, try again later'),
} as const;

export type PolicyReply = Error & { responseCode: number };
