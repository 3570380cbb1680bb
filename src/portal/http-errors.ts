import type { ErrorCode } from '../errors.js';

/**
 * The HTTP edge's table: the status for each code the portal can meet.
 * A code without an entry is our bug, answered 500 and logged.
 */
const HTTP_STATUS: Partial<Record<ErrorCode, number>> = {
  INVALID_EMAIL: 400,
  VALIDATION: 422,
  DUPLICATE_USER: 409,
  NOT_FOUND: 404,
  FORBIDDEN: 403,
  CSRF: 403,
  RATE_LIMITED: 429,
  TICKET_CLOSED: 409,
  UPLOAD_TOO_LARGE: 413,
  UPLOAD_QUOTA: 413,
};

export function httpStatusOf(code: ErrorCode): number {
  return HTTP_STATUS[code] ?? 500;
}
