/*
 * policy/check-names.ts: the names of the policy checks and the SMTP phases
 * each may run in.
 *
 * Kept apart from the checks themselves so that the configuration schema can
 * refuse an unknown name, or a check listed in a phase where it cannot run,
 * without loading the checks. Must never import anything. Called by
 * config/schema.ts and policy/registry.ts (which must match it; a test says so).
 */
export type Phase = 'connect' | 'helo' | 'mail' | 'rcpt' | 'data';

export const PHASES: readonly Phase[] = ['connect', 'helo', 'mail', 'rcpt', 'data'];

export const CHECK_PHASES = {
  blocks: ['connect', 'helo', 'mail', 'rcpt'],
  'connection-limits': ['connect'],
  dnsbl: ['connect', 'helo', 'mail', 'rcpt'],
  helo: ['helo', 'mail', 'rcpt'],
  'sender-domains': ['mail', 'rcpt'],
  spf: ['mail', 'rcpt'],
  'anti-spoofing': ['mail', 'rcpt'],
  'message-rate': ['mail'],
  harvest: ['rcpt'],
  greylist: ['rcpt'],
  authentication: ['data'],
  gtube: ['data'],
  rspamd: ['data'],
  'spam-score': ['data'],
} as const satisfies Record<string, readonly Phase[]>;

export type CheckName = keyof typeof CHECK_PHASES;

export const CHECK_NAMES = Object.keys(CHECK_PHASES) as CheckName[];
