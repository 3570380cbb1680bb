import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { BOUNCE_LOCAL_PART } from '../core/address.js';

/**
 * Signed identifiers we put in outgoing mail so replies can be threaded back
 * without trusting anything a sender could guess:
 *  - reply address  <local>+<token>@MAIL_DOMAIN  (token binds ticket + user)
 *  - Message-ID     <t<ticket>.<nonce>.<sig>@MAIL_DOMAIN>
 *  - body tag       [RL-<ticket>-<sig>]
 *  - return path    bounce+<outbound id>.<sig>@MAIL_DOMAIN  (VERP: names one outbox row)
 * Signatures are HMAC-SHA256 with SECRET_KEY, truncated to 80 bits and
 * base32-encoded (case-insensitive: mail systems lower-case local parts).
 */

const SIG_BYTES = 10;
const B32 = 'abcdefghijklmnopqrstuvwxyz234567';

function base32(buf: Buffer): string {
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of buf) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += B32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += B32[(value << (5 - bits)) & 31];
  return out;
}

function sign(secret: string, purpose: string, data: string): string {
  return base32(createHmac('sha256', secret).update(`${purpose}\0${data}`).digest().subarray(0, SIG_BYTES));
}

function safeEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a);
  const bb = Buffer.from(b);
  return ab.length === bb.length && timingSafeEqual(ab, bb);
}

export interface ReplyToken {
  ticketId: number;
  userId: number;
}

export function makeReplyToken(secret: string, t: ReplyToken): string {
  const data = `${t.ticketId}.${t.userId}`;
  return `${t.ticketId}.${t.userId}.${sign(secret, 'reply', data)}`;
}

export function verifyReplyToken(secret: string, token: string): ReplyToken | null {
  const m = /^(\d{1,15})\.(\d{1,15})\.([a-z2-7]{16})$/.exec(token.toLowerCase());
  if (!m) return null;
  const expected = sign(secret, 'reply', `${m[1]}.${m[2]}`);
  return safeEqual(expected, m[3]!) ? { ticketId: Number(m[1]), userId: Number(m[2]) } : null;
}

/** `support+<token>@mail.domain` for the given support local part. */
export function makeReplyAddress(secret: string, localPart: string, mailDomain: string, t: ReplyToken): string {
  return `${localPart}+${makeReplyToken(secret, t)}@${mailDomain}`;
}

/** Returns the token of a reply address under our MAIL_DOMAIN, if its signature is valid. */
export function parseReplyAddress(secret: string, mailDomain: string, address: string): ReplyToken | null {
  const lower = address.trim().toLowerCase();
  const at = lower.lastIndexOf('@');
  if (at < 0 || lower.slice(at + 1) !== mailDomain.toLowerCase()) return null;
  const local = lower.slice(0, at);
  const plus = local.indexOf('+');
  if (plus < 0) return null;
  return verifyReplyToken(secret, local.slice(plus + 1));
}

/** A new Message-ID (without angle brackets) that we can later recognise as ours and map to a ticket. */
export function makeMessageId(secret: string, mailDomain: string, ticketId: number | null): string {
  const t = ticketId ?? 0;
  const nonce = base32(randomBytes(10));
  return `rl.${t}.${nonce}.${sign(secret, 'mid', `${t}.${nonce}`)}@${mailDomain}`;
}

/** If the Message-ID (with or without brackets) is one we generated, the ticket it belongs to (0 = none). */
export function parseOurMessageId(secret: string, mailDomain: string, messageId: string): { ticketId: number } | null {
  const m = /^<?rl\.(\d{1,15})\.([a-z2-7]{16})\.([a-z2-7]{16})@([^>\s]+)>?$/.exec(messageId.trim().toLowerCase());
  if (!m || m[4] !== mailDomain.toLowerCase()) return null;
  return safeEqual(sign(secret, 'mid', `${m[1]}.${m[2]}`), m[3]!) ? { ticketId: Number(m[1]) } : null;
}

/** The local part of our signed return paths (VERP). */

/**
 * The envelope MAIL FROM of one outbound mail: a bounce comes back to this
 * address, and its signature alone proves which outbox row it is about —
 * whatever the bounce's text says (forwarded mailboxes report another
 * Final-Recipient; some MTAs return no headers at all).
 */
export function makeBounceAddress(secret: string, mailDomain: string, outboundId: number): string {
  return `${BOUNCE_LOCAL_PART}+${outboundId}.${sign(secret, 'verp', String(outboundId))}@${mailDomain}`;
}

/** The outbox row a return path under our MAIL_DOMAIN names, if its signature is valid. */
export function parseBounceAddress(secret: string, mailDomain: string, address: string): { outboundId: number } | null {
  const m = /^([^@]+)\+(\d{1,15})\.([a-z2-7]{16})@([^@\s]+)$/.exec(address.trim().toLowerCase());
  if (!m || m[1] !== BOUNCE_LOCAL_PART || m[4] !== mailDomain.toLowerCase()) return null;
  return safeEqual(sign(secret, 'verp', m[2]!), m[3]!) ? { outboundId: Number(m[2]) } : null;
}

/** The tag we print in every mail body so a reply threads even when clients drop headers. */
export function makeTicketTag(secret: string, ticketId: number): string {
  return `[RL-${ticketId}-${sign(secret, 'tag', String(ticketId))}]`;
}

const TAG_RE = /\[RL-(\d{1,15})-([a-z2-7]{16})\]/gi;

/** Ticket ids of every validly signed tag in a text (forged tags are ignored). */
export function findTicketTags(secret: string, text: string): number[] {
  const found = new Set<number>();
  for (const m of text.matchAll(TAG_RE)) {
    if (safeEqual(sign(secret, 'tag', m[1]!), m[2]!.toLowerCase())) found.add(Number(m[1]));
  }
  return [...found];
}

export interface FileLink {
  attachmentId: number;
  /** The recipient the link was made for: it stops working when they lose access to the ticket. */
  userId: number;
  /** Seconds since the epoch. */
  expiresAt: number;
}

/** `<attachment>.<user>.<expiry>.<sig>`: a file link for one recipient, valid until it expires or they lose access. */
export function makeFileToken(secret: string, f: FileLink): string {
  const data = `${f.attachmentId}.${f.userId}.${f.expiresAt}`;
  return `${data}.${sign(secret, 'file', data)}`;
}

/** The link's content when the signature is valid and it has not expired; null otherwise. */
export function verifyFileToken(secret: string, token: string, now: Date): FileLink | null {
  const m = /^(\d{1,15})\.(\d{1,15})\.(\d{1,12})\.([a-z2-7]{16})$/.exec(token.toLowerCase());
  if (!m) return null;
  if (!safeEqual(sign(secret, 'file', `${m[1]}.${m[2]}.${m[3]}`), m[4]!)) return null;
  const link = { attachmentId: Number(m[1]), userId: Number(m[2]), expiresAt: Number(m[3]) };
  return link.expiresAt * 1000 > now.getTime() ? link : null;
}

export interface CsatLink {
  ticketId: number;
  /** The requester the survey was sent to: the link works only while they are the ticket's requester. */
  userId: number;
}

/**
 * `<ticket>.<user>.<sig>`: the satisfaction survey's links, for the requester,
 * without signing in. No expiry in the token: a rating is accepted until the
 * ticket is closed, which the portal checks against the ticket itself.
 */
export function makeCsatToken(secret: string, l: CsatLink): string {
  const data = `${l.ticketId}.${l.userId}`;
  return `${data}.${sign(secret, 'csat', data)}`;
}

export function verifyCsatToken(secret: string, token: string): CsatLink | null {
  const m = /^(\d{1,15})\.(\d{1,15})\.([a-z2-7]{16})$/.exec(token.toLowerCase());
  if (!m) return null;
  return safeEqual(sign(secret, 'csat', `${m[1]}.${m[2]}`), m[3]!) ? { ticketId: Number(m[1]), userId: Number(m[2]) } : null;
}
