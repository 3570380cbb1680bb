import { timeZoneFor } from '../time-zones.js';
import addressparser from 'nodemailer/lib/addressparser';
import type { z } from 'zod';
import type { Config } from '../config.js';
import type { CsatRating, Db, Locale, OutboundMailRow, TicketPriority, TicketStatus } from '../db/database.js';
import { unseal } from '../core/secrets.js';
import { AppError } from '../errors.js';
import { staffAuthNoticeView } from './staff-auth-notice.js';
import { isValidEmail, normalizeEmail, type Mailbox } from '../core/address.js';
import { PAYLOAD_SCHEMAS } from './outbox.js';
import { REPLY_DELIMITER, REPLY_DELIMITER_HINT, oneLine, renderMail, type LayoutData } from './render.js';
import { loadMailContext, type MailContext, type MailContextConfig } from '../db/queries/outbound-mail-contexts.js';
import { buildThreadHeaders } from './threading.js';
import { makeBounceAddress, makeCsatToken, makeFileToken, makeReplyAddress, makeTicketTag } from './tokens.js';
import { SAFE_CONTENT_TYPE } from './content-type.js';

/**
 * Turns one outbox row into the message nodemailer sends: rendered from the
 * current database state, with our loop-proofing and threading headers.
 * Anything wrong with the row itself (bad recipient, vanished ticket) is an
 * AppError: retrying cannot fix it, so the sender records it as permanent.
 */

export type ComposeConfig = Pick<
  Config,
  | 'SECRET_KEY'
  | 'MAIL_DOMAIN'
  | 'MAIL_FROM'
  | 'VERP'
  | 'PUBLIC_URL'
  | 'SUPPORT_ADDRESSES'
  | 'MAIL_ATTACH_MAX_BYTES'
  | 'FILE_LINK_TTL'
  | 'PORTAL_TIME_ZONE'
> &
  Partial<Pick<Config, 'BRAND_NAME'>>;

/** A file the mail carries as a MIME part; its bytes are read by the delivery step, outside any transaction. */
export interface MailFile {
  attachmentId: number;
  filename: string;
  contentType: string;
  /** Set for inline images: the HTML part shows them as <img src="cid:…">. */
  cid: string | null;
}

export interface ComposeOptions {
  /** Every file as a signed link, whatever its size (the recipient's relay refused the mail with the files). */
  links?: boolean;
  /** When the links are made (their expiry counts from here). */
  now?: Date;
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
  /** Attached as MIME parts (empty when the files went as links). */
  files: MailFile[];
  /** Files went as links: there is nothing smaller to fall back to. */
  linked: boolean;
}

/** LOOP_HEADER carries MAIL_DOMAIN: the inbound side treats mail carrying its own domain here as ours. */
export const LOOP_HEADER = 'X-Replyline-Loop';

const STATUS_LABELS: Record<Locale, Record<TicketStatus, string>> = {
  // On-hold (waiting on a third party) reads as open to customers, as in Zendesk; staff mail says on-hold.
  en: { new: 'New', open: 'Open', pending: 'Pending (awaiting your reply)', hold: 'Open', solved: 'Solved', closed: 'Closed' },
  ja: { new: '新規', open: '対応中', pending: '保留（お客様の返信待ち）', hold: '対応中', solved: '解決済み', closed: '終了' },
};
const STAFF_HOLD_LABEL: Record<Locale, string> = { en: 'On-hold', ja: '保留（第三者待ち）' };
const CSAT_LABELS: Record<Locale, Record<CsatRating, string>> = {
  en: { good: 'Good', bad: 'Bad' },
  ja: { good: '良い', bad: '悪い' },
};
const PRIORITY_LABELS: Record<Locale, Record<TicketPriority, string>> = {
  en: { low: 'Low', normal: 'Normal', high: 'High', urgent: 'Urgent' },
  ja: { low: '低', normal: '通常', high: '高', urgent: '緊急' },
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

/** A time in the recipient's zone (their /profile choice, else PORTAL_TIME_ZONE), named after it. */
export function formatDate(date: Date, locale: Locale, timeZone = 'UTC'): string {
  const fmt = new Intl.DateTimeFormat(locale === 'ja' ? 'ja-JP' : 'en-GB', { dateStyle: 'medium', timeStyle: 'short', timeZone });
  return `${fmt.format(date)} ${timeZone}`;
}

/** "3 d" / "5 h" / "12 min": how long a ticket has been waiting, for the staff digest. */
export function formatAge(ms: number, locale: Locale): string {
  const minutes = Math.max(0, Math.floor(ms / 60_000));
  if (minutes < 60) return locale === 'ja' ? `${minutes}分` : `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return locale === 'ja' ? `${hours}時間` : `${hours} h`;
  const days = Math.floor(hours / 24);
  return locale === 'ja' ? `${days}日` : `${days} d`;
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
  const toStaff = row.kind === 'staff_notification';
  return {
    id: c.ticket.id,
    subject: oneLine(c.ticket.subject) || (locale === 'ja' ? '（件名なし）' : '(no subject)'),
    status: c.ticket.status,
    statusLabel: toStaff && c.ticket.status === 'hold' ? STAFF_HOLD_LABEL[locale] : STATUS_LABELS[locale][c.ticket.status],
    priorityLabel: PRIORITY_LABELS[locale][c.ticket.priority],
    /** Staff subjects name the priority only when it is not the default, to keep them short. */
    priorityShown: c.ticket.priority !== 'normal',
    url: `${config.PUBLIC_URL}/requests/${c.ticket.id}`,
    tag: makeTicketTag(config.SECRET_KEY, c.ticket.id),
    // The requester's rating is for staff eyes; a CC never sees it.
    csatLabel: toStaff && c.ticket.csatRating ? CSAT_LABELS[locale][c.ticket.csatRating] : null,
    csatComment: toStaff && c.ticket.csatRating ? oneLine(c.ticket.csatComment ?? '', 300) || null : null,
  };
}

/** A payload that does not match its schema is a permanent problem of the row, not a reason to retry. */
function payloadOf<
  K extends 'staff_notification' | 'password_setup' | 'ticket_lifecycle' | 'staff_digest' | 'sign_in_link' | 'request_confirmation',
>(kind: K, row: OutboundMailRow): z.output<(typeof PAYLOAD_SCHEMAS)[K]> {
  const parsed = PAYLOAD_SCHEMAS[kind].safeParse(row.payload);
  if (!parsed.success) throw new AppError('VALIDATION', `${kind} mail ${row.id}: invalid payload: ${parsed.error.message}`);
  return parsed.data as z.output<(typeof PAYLOAD_SCHEMAS)[K]>;
}

/** The survey's Good/Bad links, signed for this ticket and recipient (the requester). */
function csatLinks(config: ComposeConfig, row: OutboundMailRow, ticketId: number) {
  if (row.user_id === null) throw new AppError('VALIDATION', `satisfaction mail ${row.id}: no recipient account`);
  const url = `${config.PUBLIC_URL}/satisfaction/${makeCsatToken(config.SECRET_KEY, { ticketId, userId: row.user_id })}`;
  return { goodUrl: `${url}/good`, badUrl: `${url}/bad` };
}

/** A link carrying a sealed one-time token (sign-in, request confirmation): built only now, under PUBLIC_URL. */
function tokenLink(config: ComposeConfig, row: OutboundMailRow, kind: 'sign_in_link' | 'request_confirmation', path: string) {
  const p = payloadOf(kind, row);
  const token = p.token ? unseal(config.SECRET_KEY, p.token) : null;
  if (!token) throw new AppError('VALIDATION', `${kind} mail ${row.id}: token cannot be opened (SECRET_KEY changed?)`);
  return {
    url: `${config.PUBLIC_URL}${path}?token=${encodeURIComponent(token)}`,
    expiresAt: formatDate(new Date(p.expiresAt), row.locale),
  };
}

const NO_LAYOUT: LayoutData = { delimiter: '', delimiterHint: '', tag: '' };

type FileView = { filename: string; size: string; url: string | null; cid: string | null; image: boolean };

/**
 * Which files go as MIME parts and which as links. All of a mail's files go
 * one way: attached when together they fit MAIL_ATTACH_MAX_BYTES, else each a
 * link signed for this recipient (so the link dies with their access).
 */
export function planFiles(
  config: ComposeConfig,
  row: OutboundMailRow,
  c: MailContext,
  opts: ComposeOptions,
): { parts: MailFile[]; view: FileView[]; linked: boolean } {
  const total = c.attachments.reduce((n, a) => n + a.size, 0);
  const linked = row.user_id !== null && (opts.links === true || total > config.MAIL_ATTACH_MAX_BYTES);
  const expiresAt = Math.floor(((opts.now ?? new Date()).getTime() + config.FILE_LINK_TTL) / 1000);
  const parts: MailFile[] = [];
  const view: FileView[] = [];
  for (const a of c.attachments) {
    const filename = oneLine(a.filename, 200) || 'attachment';
    const contentType = SAFE_CONTENT_TYPE.test(a.contentType) ? a.contentType.toLowerCase() : 'application/octet-stream';
    // Our own Content-ID, never the sender's: it is an identifier we put in our HTML.
    const cid = a.inline && contentType.startsWith('image/') ? `file${a.id}@${config.MAIL_DOMAIN}` : null;
    const url = linked
      ? `${config.PUBLIC_URL}/files/${makeFileToken(config.SECRET_KEY, { attachmentId: a.id, userId: row.user_id!, expiresAt })}`
      : null;
    if (!linked) parts.push({ attachmentId: a.id, filename, contentType, cid });
    view.push({ filename, size: formatSize(a.size), url, cid: linked ? null : cid, image: cid !== null });
  }
  return { parts, view, linked };
}

function templateData(
  config: ComposeConfig,
  row: OutboundMailRow,
  c: MailContext,
  recipient: Mailbox,
  brand: string,
  files: { view: FileView[] },
) {
  const locale = row.locale;
  const zone = timeZoneFor({ time_zone: c.toTimeZone }, config.PORTAL_TIME_ZONE);
  const base = { brand, publicUrl: config.PUBLIC_URL, recipient: { name: recipient.name, email: recipient.address } };
  const ticketLayout = (tag: string) => ({ delimiter: REPLY_DELIMITER, delimiterHint: REPLY_DELIMITER_HINT[locale], tag });
  switch (row.kind) {
    case 'acknowledgement': {
      const ticket = ticketView(config, row, c, locale);
      // Pre-filled with the address this mail went to: one click fewer, and no other address offered.
      const passwordUrl = `${config.PUBLIC_URL}/password/new?email=${encodeURIComponent(recipient.address)}`;
      return { ...base, ...ticketLayout(ticket.tag), ticket, passwordUrl };
    }
    case 'staff_notification':
    case 'ticket_update': {
      const ticket = ticketView(config, row, c, locale);
      const toStaff = row.kind === 'staff_notification';
      const payload = toStaff ? payloadOf('staff_notification', row) : null;
      const event = payload?.event ?? 'update';
      // A status change (the customer's "solved") has no message of its own.
      if (!c.message && event !== 'customer_solved') throw new AppError('NOT_FOUND', `${row.kind} mail ${row.id}: message not found`);
      const who = (a: { authorName: string | null; authorEmail: string; authorRole: string }) =>
        // Customers see a staff member's name (or the brand), never their personal address. A customer's
        // display name is whatever they typed ("Acme Security"), so everyone else sees their address too.
        !toStaff && a.authorRole === 'staff'
          ? oneLine(a.authorName ?? '', 100) || brand
          : displayName({ name: a.authorName, email: a.authorEmail }, true);
      const actor =
        c.message ?? (payload?.by ? { authorName: payload.by.name, authorEmail: payload.by.email, authorRole: 'customer' } : null);
      return {
        ...base,
        ...ticketLayout(ticket.tag),
        ticket,
        isNew: event === 'ticket_created',
        isNote: event === 'internal_note',
        isSolved: event === 'customer_solved',
        isFyi: event === 'staff_reply',
        isCollision: event === 'collision',
        author: { display: actor ? who(actor) : '' },
        requester: { display: displayName({ name: c.ticket?.requesterName ?? null, email: c.ticket?.requesterEmail ?? '' }, true) },
        message: { text: c.message?.text ?? '' },
        attachments: files.view,
        history: c.history.map((h) => ({ author: who(h), at: formatDate(new Date(h.at), locale, zone), text: h.text })),
      };
    }
    case 'password_setup': {
      const p = payloadOf('password_setup', row);
      const token = p.token ? unseal(config.SECRET_KEY, p.token) : null;
      const url = token ? `${config.PUBLIC_URL}/password/set?token=${encodeURIComponent(token)}` : p.url;
      if (!url) throw new AppError('VALIDATION', `password_setup mail ${row.id}: token cannot be opened (SECRET_KEY changed?)`);
      if (!url.startsWith(`${config.PUBLIC_URL}/`)) throw new AppError('VALIDATION', 'password link is not under PUBLIC_URL');
      return {
        ...base,
        ...NO_LAYOUT,
        url,
        isReset: p.purpose === 'password_reset',
        expiresAt: formatDate(new Date(p.expiresAt), locale, zone),
      };
    }
    case 'sign_in_link':
      return { ...base, ...NO_LAYOUT, ...tokenLink(config, row, 'sign_in_link', '/login/link/open') };
    case 'request_confirmation':
      // No recipient name: it would be text the visitor typed (this address has no account to name it).
      return {
        ...base,
        ...NO_LAYOUT,
        recipient: { name: '', email: recipient.address },
        ...tokenLink(config, row, 'request_confirmation', '/requests/new/confirm'),
      };
    case 'password_changed':
      return { ...base, ...NO_LAYOUT, changedAt: formatDate(row.created_at, locale, zone), resetUrl: `${config.PUBLIC_URL}/password/new` };
    case 'staff_digest': {
      const p = payloadOf('staff_digest', row);
      const tickets = p.tickets.map((t) => ({
        id: t.id,
        subject: oneLine(t.subject) || (locale === 'ja' ? '（件名なし）' : '(no subject)'),
        url: `${config.PUBLIC_URL}/requests/${t.id}`,
        age: formatAge(row.created_at.getTime() - Date.parse(t.createdAt), locale),
        statusLabel: t.status === 'hold' ? STAFF_HOLD_LABEL[locale] : STATUS_LABELS[locale][t.status],
        priorityLabel: PRIORITY_LABELS[locale][t.priority],
        urgent: t.priority === 'urgent' || t.priority === 'high',
        mine: t.mine,
        csatLabel: t.csat ? CSAT_LABELS[locale][t.csat] : null,
      }));
      return {
        ...base,
        ...NO_LAYOUT,
        date: p.date,
        tickets,
        count: tickets.length + p.more,
        more: p.more,
        csat: p.csat && p.csat.good + p.csat.bad > 0 ? p.csat : null,
        requestsUrl: `${config.PUBLIC_URL}/requests?filter=all`,
      };
    }
    case 'ticket_lifecycle': {
      const ticket = ticketView(config, row, c, locale);
      const { event } = payloadOf('ticket_lifecycle', row);
      return {
        ...base,
        ...ticketLayout(ticket.tag),
        ticket,
        isReminder: event === 'pending_reminder',
        isAutoSolved: event === 'auto_solved',
        isCsat: event === 'csat',
        ...(event === 'csat' ? csatLinks(config, row, ticket.id) : {}),
      };
    }
    case 'staff_auth_notice':
      return { ...base, ...NO_LAYOUT, ...staffAuthNoticeView(row) };
  }
}

/** Renders one outbox row from its loaded context (see loadMailContext). Pure: no I/O. */
export function composeMail(config: ComposeConfig, row: OutboundMailRow, c: MailContext, opts: ComposeOptions = {}): ComposedMail {
  if (!isValidEmail(row.recipient)) throw new AppError('INVALID_EMAIL', `invalid recipient address: ${JSON.stringify(row.recipient)}`);
  const from = parseMailFrom(config.MAIL_FROM);
  const to: Mailbox = { name: c.toName ? oneLine(c.toName, 100) : '', address: normalizeEmail(row.recipient) };
  const files =
    row.kind === 'staff_notification' || row.kind === 'ticket_update'
      ? planFiles(config, row, c, opts)
      : { parts: [], view: [], linked: false };
  const rendered = renderMail(
    row.kind,
    row.locale,
    templateData(config, row, c, to, config.BRAND_NAME ?? (from.name || from.address), files),
  );

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
    // Bounces come back to this row's own signed return path (VERP), which the
    // listener accepts and the inbound side matches to exactly this row; with
    // VERP=off they go to MAIL_FROM and are matched by our signed Message-ID.
    envelope: {
      from: config.VERP === 'on' ? makeBounceAddress(config.SECRET_KEY, config.MAIL_DOMAIN, row.id) : from.address,
      to: [to.address],
    },
    files: files.parts,
    linked: files.linked,
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
export async function composeOutboundMail(
  db: Db,
  config: ComposeConfig & MailContextConfig,
  row: Pick<OutboundMailRow, 'id'>,
): Promise<ComposedMail> {
  const loaded = await loadMailContext(db, config, row.id, { lock: false });
  if (!loaded) throw new AppError('NOT_FOUND', `outbound mail ${row.id} not found`);
  return composeMail(config, loaded.row, loaded.context);
}
