/**
 * The one catalogue of stable error codes. Codes never change meaning once
 * released; operators grep logs for them and tests assert on them.
 * Each entry carries how the edges map it: an SMTP reply for the listener,
 * an HTTP status for the portal.
 */
export const ERRORS = {
  // SMTP edge
  SMTP_UNKNOWN_RECIPIENT: { smtp: [550, '5.1.1 No such recipient here'], http: 400 },
  SMTP_TOO_MANY_RECIPIENTS: { smtp: [452, '4.5.3 Too many recipients'], http: 400 },
  SMTP_MESSAGE_TOO_BIG: { smtp: [552, '5.3.4 Message size exceeds fixed maximum message size'], http: 413 },
  SMTP_STORAGE_UNAVAILABLE: { smtp: [451, '4.3.0 Temporary storage failure, try again later'], http: 503 },
  SMTP_RATE_LIMITED_CONNECTIONS: { smtp: [421, '4.7.0 Too many connections, slow down'], http: 429 },
  SMTP_TOO_MANY_SESSIONS: { smtp: [421, '4.7.0 Too many open sessions from your address, try again later'], http: 429 },
  SMTP_RATE_LIMITED_MESSAGES: { smtp: [451, '4.7.1 Too many messages, try again later'], http: 429 },
  SMTP_SHUTTING_DOWN: { smtp: [421, '4.3.2 Service shutting down, try again later'], http: 503 },
  SMTP_BAD_SENDER: { smtp: [553, '5.1.7 Invalid sender address'], http: 400 },

  // Configuration and startup
  CONFIG_INVALID: { smtp: [451, '4.3.5 Configuration error'], http: 500 },
  REDIS_EVICTION_POLICY: { smtp: [451, '4.3.5 Configuration error'], http: 500 },

  // Domain
  INVALID_EMAIL: { smtp: [553, '5.1.3 Invalid address'], http: 400 },
  DUPLICATE_USER: { smtp: [550, '5.0.0 Duplicate'], http: 409 },
  NOT_FOUND: { smtp: [550, '5.0.0 Not found'], http: 404 },
  VALIDATION: { smtp: [550, '5.0.0 Invalid input'], http: 422 },
  FORBIDDEN: { smtp: [550, '5.7.1 Not allowed'], http: 403 },
  CSRF: { smtp: [550, '5.7.1 Not allowed'], http: 403 },
  RATE_LIMITED: { smtp: [451, '4.7.1 Rate limited'], http: 429 },
  TICKET_CLOSED: { smtp: [550, '5.0.0 Ticket closed'], http: 409 },
  UPLOAD_TOO_LARGE: { smtp: [552, '5.3.4 Attachment too large'], http: 413 },
  UPLOAD_QUOTA: { smtp: [552, '5.3.4 Upload quota exceeded'], http: 413 },

  // Jobs
  JOB_PAYLOAD_INVALID: { smtp: [451, '4.3.0 Internal error'], http: 500 },
  OUTBOUND_PERMANENT: { smtp: [550, '5.0.0 Permanent failure'], http: 502 },
  OUTBOUND_TEMPORARY: { smtp: [451, '4.4.1 Temporary failure'], http: 502 },
} as const satisfies Record<string, { smtp: readonly [number, string]; http: number }>;

export type ErrorCode = keyof typeof ERRORS;

export class AppError extends Error {
  readonly code: ErrorCode;
  /** smtp-server sends this code when an AppError is thrown from a handler. */
  readonly responseCode: number;
  readonly httpStatus: number;

  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown }) {
    const entry = ERRORS[code];
    super(message ?? entry.smtp[1], options);
    this.name = 'AppError';
    this.code = code;
    this.responseCode = entry.smtp[0];
    this.httpStatus = entry.http;
  }

  /** The text smtp-server puts after the code: enhanced status first, then our detail. */
  get smtpText(): string {
    return ERRORS[this.code].smtp[1];
  }
}

export function isAppError(err: unknown, code?: ErrorCode): err is AppError {
  return err instanceof AppError && (code === undefined || err.code === code);
}
