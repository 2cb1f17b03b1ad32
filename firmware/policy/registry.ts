/*
 * policy/registry.ts: check name → check. Adding a check is adding one module
 * under policy/checks/, one line here and its phases in policy/check-names.ts.
 *
 * Must never build a check the configuration did not name. Called by
 * policy/policy.ts at start-up.
 */
import type { Config } from '../config/schema.ts';
import type { DnsResolver } from '../dns/resolver.ts';
import type { Logger } from '../log/logger.ts';
import type { AbuseTracker } from './abuse-tracker.ts';
import type { Check } from './chain.ts';
import type { CheckName } from './check-names.ts';
import { blocksCheck } from './checks/blocks.ts';
import { connectionLimitsCheck } from './checks/connection-limits.ts';
import { dnsblCheck } from './checks/dnsbl.ts';
import { heloCheck } from './checks/helo.ts';
import { senderDomainsCheck } from './checks/sender-domains.ts';
import { spfCheck } from './checks/spf.ts';
import { antiSpoofingCheck } from './checks/anti-spoofing.ts';
import { messageRateCheck } from './checks/message-rate.ts';
import { harvestCheck } from './checks/harvest.ts';
import { greylistCheck } from './checks/greylist.ts';
import { authenticationCheck } from './checks/authentication.ts';
import { gtubeCheck } from './checks/gtube.ts';
import { rspamdCheck } from './checks/rspamd.ts';
import { spamScoreCheck } from './checks/spam-score.ts';

export type CheckServices = {
  config: Config;
  resolver: DnsResolver;
  tracker: AbuseTracker;
  log: Logger;
  localDomains: ReadonlySet<string>;
  now: () => number;
};

export const REGISTRY: Record<CheckName, (s: CheckServices) => Check> = {
  blocks: blocksCheck,
  'connection-limits': connectionLimitsCheck,
  dnsbl: dnsblCheck,
  helo: heloCheck,
  'sender-domains': senderDomainsCheck,
  spf: spfCheck,
  'anti-spoofing': antiSpoofingCheck,
  'message-rate': messageRateCheck,
  harvest: harvestCheck,
  greylist: greylistCheck,
  authentication: authenticationCheck,
  gtube: gtubeCheck,
  rspamd: rspamdCheck,
  'spam-score': spamScoreCheck,
};
