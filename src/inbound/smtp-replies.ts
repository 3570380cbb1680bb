import { AppError, type ErrorCode } from '../errors.js';

/**
 * The SMTP edge's table: the reply for each code the listener can meet.
 * Enhanced status codes (RFC 3463) are part of our text because smtp-server
 * runs with them hidden, and its own per-code defaults would be wrong for
 * several of these (452 → 4.2.2 where a recipient limit is 4.5.3).
 */
const SMTP_REPLIES = {
  SMTP_UNKNOWN_RECIPIENT: [550, '5.1.1'],
  SMTP_TOO_MANY_RECIPIENTS: [452, '4.5.3'],
  SMTP_MESSAGE_TOO_BIG: [552, '5.3.4'],
  SMTP_STORAGE_UNAVAILABLE: [451, '4.3.0'],
  SMTP_RATE_LIMITED_CONNECTIONS: [421, '4.7.0'],
  SMTP_TOO_MANY_SESSIONS: [421, '4.7.0'],
  SMTP_RATE_LIMITED_MESSAGES: [451, '4.7.1'],
} as const satisfies Partial<Record<ErrorCode, readonly [number, string]>>;

export type SmtpErrorCode = keyof typeof SMTP_REPLIES;

/** What smtp-server sends when a handler fails: `responseCode` is the reply code, the message its text. */
export interface SmtpReply extends Error {
  responseCode: number;
}

export function smtpReply(code: SmtpErrorCode): SmtpReply {
  const [responseCode, enhanced] = SMTP_REPLIES[code];
  const err = new AppError(code) as AppError & SmtpReply;
  err.responseCode = responseCode;
  err.message = `${enhanced} ${err.message}`;
  return err;
}

/** Any failure in a handler: ours keeps its reply; anything unexpected is a temporary local error. */
export function toSmtpReply(err: unknown): SmtpReply {
  if (err instanceof AppError && err.code in SMTP_REPLIES && 'responseCode' in err) return err as AppError & SmtpReply;
  return smtpReply('SMTP_STORAGE_UNAVAILABLE');
}
