/*
 * log/logger.ts: the structured log. One JSON line per event through pino.
 *
 * Must never log secrets (passwords, keys, AUTH exchanges) or message bodies;
 * addresses and client names are logged as data fields, never spliced into the
 * message text. Called by moatd at start-up; everything else receives a child.
 */
import { pino, type Logger, type DestinationStream } from 'pino';
import type { LogRing } from './ring.ts';

export type { Logger };

/** `ring`, when given, keeps the last lines for `show log` (log/ring.ts). */
export function createLogger(level: string, dest?: DestinationStream, ring?: LogRing): Logger {
  const out = dest ?? pino.destination({ fd: 1, sync: false });
  return pino(
    {
      level,
      base: { svc: 'moatd' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: ['password', '*.password', 'pass', '*.pass', 'key', '*.key'], censor: '[secret]' },
    },
    ring ? ring.tee(out) : out,
  );
}

/** A logger that drops everything, for tests that do not look at the log. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
