/**
 * The one catalogue of stable error codes, each with its default message
 * (Fastify-style). Codes never change meaning once released; operators grep
 * logs for them and tests assert on them.
 *
 * The catalogue knows no protocol. Each edge maps the codes it can meet in
 * its own table: SMTP replies in src/inbound/smtp-replies.ts, HTTP statuses
 * in src/portal/http-errors.ts; the CLI prints code and message. Jobs use
 * BullMQ's two retry classes: `UnrecoverableError` for what retrying cannot
 * fix, any other error is retried with backoff.
 */
export const ERRORS = {
  // SMTP listener
  SMTP_UNKNOWN_RECIPIENT: 'No such recipient here',
  SMTP_TOO_MANY_RECIPIENTS: 'Too many recipients',
  SMTP_MESSAGE_TOO_BIG: 'Message size exceeds fixed maximum message size',
  SMTP_STORAGE_UNAVAILABLE: 'Temporary storage failure, try again later',
  SMTP_RATE_LIMITED_CONNECTIONS: 'Too many connections, slow down',
  SMTP_TOO_MANY_SESSIONS: 'Too many open sessions from your address, try again later',
  SMTP_RATE_LIMITED_MESSAGES: 'Too many messages, try again later',

  // Start-up
  REDIS_EVICTION_POLICY: 'Redis evicts keys; queued jobs would be lost',

  // Domain
  INVALID_EMAIL: 'Invalid address',
  DUPLICATE_USER: 'Duplicate',
  NOT_FOUND: 'Not found',
  VALIDATION: 'Invalid input',
  FORBIDDEN: 'Not allowed',
  CSRF: 'Not allowed',
  RATE_LIMITED: 'Rate limited',
  TICKET_CLOSED: 'Ticket closed',
  UPLOAD_TOO_LARGE: 'Attachment too large',
  UPLOAD_QUOTA: 'Upload quota exceeded',

  // Jobs: a payload that fails its schema when enqueued (in the worker it is an UnrecoverableError).
  JOB_PAYLOAD_INVALID: 'Invalid job payload',
} as const satisfies Record<string, string>;

export type ErrorCode = keyof typeof ERRORS;

export class AppError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown }) {
    super(message ?? ERRORS[code], options);
    this.name = 'AppError';
    this.code = code;
  }
}

export function isAppError(err: unknown, code?: ErrorCode): err is AppError {
  return err instanceof AppError && (code === undefined || err.code === code);
}
