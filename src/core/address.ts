import { z } from 'zod';
import { AppError } from '../errors.js';

/**
 * zod's default address grammar, except that the domain may be a single label
 * (`support@localhost`): the Docker quick start and every local trial use one,
 * and a relay decides for itself whether it can reach a domain.
 */
const ADDRESS =
  /^(?!\.)(?!.*\.\.)[A-Za-z0-9_'+\-.]*[A-Za-z0-9_+-]@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const emailSchema = z.email({ pattern: ADDRESS });

/**
 * The one normalisation of an email address used for lookups and storage.
 * Local parts are case-insensitive in practice (every major provider), so
 * the whole address is lower-cased.
 */
export function normalizeEmail(raw: string): string {
  return raw.trim().toLowerCase();
}

export function isValidEmail(raw: string): boolean {
  const email = normalizeEmail(raw);
  return email.length <= 254 && emailSchema.safeParse(email).success;
}

/** Normalises and validates, throwing INVALID_EMAIL with the offending value. */
export function parseEmail(raw: string): string {
  if (!isValidEmail(raw)) throw new AppError('INVALID_EMAIL', `invalid email address: "${raw}"`);
  return normalizeEmail(raw);
}

export function domainOf(email: string): string {
  return email.slice(email.lastIndexOf('@') + 1).toLowerCase();
}

/** The local part of our signed return paths (`bounce+<id>.<sig>@MAIL_DOMAIN`, src/mail/tokens.ts). */
export const BOUNCE_LOCAL_PART = 'bounce';

/**
 * Our own addresses: the support addresses, their `+token` reply addresses
 * and our `bounce+…` return paths under MAIL_DOMAIN (signed or not). Not "anything @MAIL_DOMAIN":
 * MAIL_DOMAIN defaults to the support domain, where staff have mailboxes too.
 */
export function isOurAddress(config: { SUPPORT_ADDRESSES: readonly string[]; MAIL_DOMAIN: string }, raw: string): boolean {
  const email = normalizeEmail(raw);
  if (config.SUPPORT_ADDRESSES.includes(email)) return true;
  if (domainOf(email) !== config.MAIL_DOMAIN) return false;
  const local = email.slice(0, email.lastIndexOf('@'));
  if (local.startsWith(`${BOUNCE_LOCAL_PART}+`)) return true;
  return config.SUPPORT_ADDRESSES.some((s) => local.startsWith(`${s.slice(0, s.lastIndexOf('@'))}+`));
}

/** A display name and an address: a From, a To, a CC (one type for inbound and outbound mail). */
export interface Mailbox {
  name: string;
  address: string;
}
