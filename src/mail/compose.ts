import addressparser from 'nodemailer/lib/addressparser';
import type { z } from 'zod';
import type { Config } from '../config.js';
import type { Db, Locale, OutboundMailRow, TicketStatus } from '../db/database.js';
import { unseal } from '../auth/secrets.js';
import { AppError } from '../errors.js';
import { isValidEmail, normalizeEmail } from './address.js';
import { PAYLOAD_SCHEMAS } from './outbox.js';
import { REPLY_DELIMITER, REPLY_DELIMITER_HINT, oneLine, renderMail, type LayoutData } from './render.js';
import { loadMailContext, type MailContext } from './mail-context.js';
import { buildThreadHeaders } from './threading.js';
import { makeReplyAddress, makeTicketTag } from './tokens.js';

/**
 * Turns one outbox row into the message nodemailer sends: rendered from the
 * current database state, with our loop-proofing and threading headers.
 * Anything wrong with the row itself (bad recipient, vanished ticket) is an
 * AppError: retrying cannot fix it, so the sender records it as permanent.
 */

export type ComposeConfig = Pick<
  Config,
  'SECRET_KEY' | 'MAIL_DOMAIN' | 'MAIL_FROM' | 'PUBLIC_URL' | 'SUPPORT_ADDRESSES'
>;

export interface Mailbox {
  name: string;
  address: string;
}

export interface ComposedMail {
  from: Mailbox;
  to: Mailbox;
  replyTo?: Mailbox;
  subject: string;
  text: string;
  html: string;
  messageId: string;
  inReplyTo?: string;
  references?: string[];
  headers: Record<string, string>;
  envelope: { from: string; to: string[] };
}

/** LOOP_HEADER carries MAIL_DOMAIN: the inbound side treats mail carrying its own domain here as ours. */
export const LOOP_HEADER = 'X-Replyline-Loop';

const STATUS_LABELS: Record<Locale, Record<TicketStatus, string>> = {
  en: { new: 'New', open: 'Open', pending: 'Pending (awaiting your reply)', solved: 'Solved', closed: 'Closed' },
  ja: { new: '新規', open: '対応中', pending: '保留（お客様の返信待ち）', solved: '解決済み', closed: '終了' },
};

const mailFromCache = new Map<string, Mailbox>();

export function parseMailFrom(mailFrom: string): Mailbox {
  const cached = mailFromCache.get(mailFrom);
  if (cached) return cached;
  const [first] = addressparser(mailFrom, { flatten: true });
  // A configuration problem, not the row's: a plain Error keeps the mail queued and retried until it is fixed.
  if (!first || !isValidEmail(first.address)) throw new Error(`MAIL_FROM is not a valid address: "${mailFrom}"`);
  const box = { name: oneLine(first.name, 100), address: normalizeEmail(first.address) };
  mailFromCache.set(mailFrom, box);
  return box;
}

export function formatDate(date: Date, locale: Locale): string {
  const fmt = new Intl.DateTimeFormat(locale === 'ja' ? 'ja-JP' : 'en-GB', { dateStyle: 'medium', timeStyle: 'short', timeZone: 'UTC' });
  return `${fmt.format(date)} UTC`;
}

export function formatSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} KB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}

function displayName(u: { name: string | null; email: string }, withEmail: boolean): string {
  const name = u.name ? oneLine(u.name, 100) : '';
  if (!name) return u.email;
  return withEmail ? `${name} (${u.email})` : name;
}

function ticketView(config: ComposeConfig, row: OutboundMailRow, c: MailContext, locale: Locale) {
  if (!c.ticket) throw new AppError('NOT_FOUND', `${row.kind} mail ${row.id}: ticket ${row.ticket_id} not found`);
  return {
    id: c.ticket.id,
    subject: oneLine(c.ticket.subject) || (locale === 'ja' ? '（件名なし）' : '(no subject)'),
    status: c.ticket.status,
    statusLabel: STATUS_LABELS[locale][c.ticket.status],
    url: `${config.PUBLIC_URL}/requests/${c.ticket.id}`,
    tag: makeTicketTag(config.SECRET_KEY, c.ticket.id),
  };
}

/** A payload that does not match its schema is a permanent problem of the row, not a reason to retry. */
function payloadOf<K extends 'staff_notification' | 'password_setup'>(kind: K, row: OutboundMailRow): z.output<(typeof PAYLOAD_SCHEMAS)[K]> {
  const parsed = PAYLOAD_SCHEMAS[kind].safeParse(row.payload);
  if (!parsed.success) throw new AppError('VALIDATION', `${kind} mail ${row.id}: invalid payload: ${parsed.error.message}`);
  return parsed.data as z.output<(typeof PAYLOAD_SCHEMAS)[K]>;
}

const NO_LAYOUT: LayoutData = { delimiter: '', delimiterHint: '', tag: '' };

function templateData(config: ComposeConfig, row: OutboundMailRow, c: MailContext, recipient: Mailbox, brand: string) {
  const locale = row.locale;
  const base = { brand, publicUrl: config.PUBLIC_URL, recipient: { name: recipient.name, email: recipient.address } };
  const ticketLayout = (tag: string) => ({ delimiter: REPLY_DELIMITER, delimiterHint: REPLY_DELIMITER_HINT[locale], tag });
  switch (row.kind) {
    case 'acknowledgement': {
      const ticket = ticketView(config, row, c, locale);
      return { ...base, ...ticketLayout(ticket.tag), ticket, passwordUrl: `${config.PUBLIC_URL}/password/new` };
    }
    case 'staff_notification':
    case 'ticket_update': {
      const ticket = ticketView(config, row, c, locale);
      if (!c.message) throw new AppError('NOT_FOUND', `${row.kind} mail ${row.id}: message not found`);
      const author = { name: c.message.authorName, email: c.message.authorEmail };
      const toStaff = row.kind === 'staff_notification';
      const payload = toStaff ? payloadOf('staff_notification', row) : null;
      // A customer's display name is whatever they typed ("Acme Security"): other customers see the address too.
      let authorDisplay = displayName(author, toStaff || c.message.authorRole !== 'staff');
      // Customers see a staff member's name (or the brand), never their personal address.
      if (!toStaff && c.message.authorRole === 'staff' && !author.name) authorDisplay = brand;
      return {
        ...base,
        ...ticketLayout(ticket.tag),
        ticket,
        isNew: payload?.event === 'ticket_created',
        author: { display: authorDisplay },
        requester: { display: displayName({ name: c.ticket?.requesterName ?? null, email: c.ticket?.requesterEmail ?? '' }, true) },
        message: { text: c.message.text },
        attachments: c.attachments.map((a) => ({ filename: oneLine(a.filename, 200), size: formatSize(a.size) })),
      };
    }
    case 'password_setup': {
      const p = payloadOf('password_setup', row);
      const token = p.token ? unseal(config.SECRET_KEY, p.token) : null;
      const url = token ? `${config.PUBLIC_URL}/password/set?token=${encodeURIComponent(token)}` : p.url;
      if (!url) throw new AppError('VALIDATION', `password_setup mail ${row.id}: token cannot be opened (SECRET_KEY changed?)`);
      if (!url.startsWith(`${config.PUBLIC_URL}/`)) throw new AppError('VALIDATION', 'password link is not under PUBLIC_URL');
      return { ...base, ...NO_LAYOUT, url, isReset: p.purpose === 'password_reset', expiresAt: formatDate(new Date(p.expiresAt), locale) };
    }
    case 'password_changed':
      return { ...base, ...NO_LAYOUT, changedAt: formatDate(row.created_at, locale), resetUrl: `${config.PUBLIC_URL}/password/new` };
  }
}

/** Renders one outbox row from its loaded context (see loadMailContext). Pure: no I/O. */
export function composeMail(config: ComposeConfig, row: OutboundMailRow, c: MailContext): ComposedMail {
  if (!isValidEmail(row.recipient)) throw new AppError('INVALID_EMAIL', `invalid recipient address: ${JSON.stringify(row.recipient)}`);
  const from = parseMailFrom(config.MAIL_FROM);
  const to: Mailbox = { name: c.toName ? oneLine(c.toName, 100) : '', address: normalizeEmail(row.recipient) };
  const rendered = renderMail(row.kind, row.locale, templateData(config, row, c, to, from.name || from.address));

  const mail: ComposedMail = {
    from,
    to,
    subject: rendered.subject,
    text: rendered.text,
    html: rendered.html,
    messageId: `<${row.message_id}>`,
    headers: {
      // RFC 3834: acknowledgements answer a message, everything else is generated by an event.
      'Auto-Submitted': row.kind === 'acknowledgement' ? 'auto-replied' : 'auto-generated',
      // Exchange/Outlook: no out-of-office or read receipts back to us.
      'X-Auto-Response-Suppress': 'All',
      [LOOP_HEADER]: config.MAIL_DOMAIN,
    },
    // Bounces go to our support address, where the inbound side matches them to this row.
    envelope: { from: from.address, to: [to.address] },
  };

  if (row.ticket_id !== null && row.user_id !== null) {
    const local = config.SUPPORT_ADDRESSES[0]!.split('@')[0]!;
    mail.replyTo = {
      name: from.name,
      address: makeReplyAddress(config.SECRET_KEY, local, config.MAIL_DOMAIN, { ticketId: row.ticket_id, userId: row.user_id }),
    };
    const thread = buildThreadHeaders(c.thread);
    if (thread.inReplyTo) mail.inReplyTo = `<${thread.inReplyTo}>`;
    if (thread.references.length) mail.references = thread.references.map((id) => `<${id}>`);
  }
  return mail;
}

/** Loads and renders one row without locking it (previews, benchmarks, tests). */
export async function composeOutboundMail(db: Db, config: ComposeConfig & Pick<Config, 'BREAKER_WINDOW_MS'>, row: Pick<OutboundMailRow, 'id'>): Promise<ComposedMail> {
  const loaded = await loadMailContext(db, config, row.id, { lock: false });
  if (!loaded) throw new AppError('NOT_FOUND', `outbound mail ${row.id} not found`);
  return composeMail(config, loaded.row, loaded.context);
}
