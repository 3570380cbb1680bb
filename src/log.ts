import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string, bindings: Record<string, unknown> = {}): Logger {
  return pino({
    level,
    base: { service: 'replyline', ...bindings },
    // Raw mail, passwords and tokens must never reach a log line by accident.
    redact: { paths: ['raw', '*.raw', 'password', '*.password', 'token', '*.token'], censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}
