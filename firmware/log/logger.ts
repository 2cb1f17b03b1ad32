/*
 * log/logger.ts: the structured log. One JSON line per event through pino.
 *
 * Must never log secrets (passwords, keys, AUTH exchanges) or message bodies;
 * addresses and client names are logged as data fields, never spliced into the
 * message text. Called by moatd at start-up; everything else receives a child.
 */
import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

export function createLogger(level: string, dest?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { svc: 'moatd' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: ['password', '*.password', 'pass', '*.pass', 'key', '*.key'], censor: '[secret]' },
    },
    dest ?? pino.destination({ fd: 1, sync: false }),
  );
}

/** A logger that drops everything, for tests that do not look at the log. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
