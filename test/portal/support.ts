import { unseal } from '../../src/core/secrets.js';
import { sql } from 'kysely';
import { hashPassword } from '../../src/auth/password.js';
import type { Db, TicketStatus, UserRole, Visibility } from '../../src/db/database.js';
import { addAttachment } from '../../src/db/queries/attachments.js';
import { addMessage } from '../../src/db/queries/messages.js';
import { addParticipant } from '../../src/db/queries/ticket-participants.js';
import { createTicket, setTicketStatus } from '../../src/db/queries/tickets.js';
import { createUser } from '../../src/db/queries/users.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { freePort } from '../support/net.js';
export { freePort };

export interface PortalTestApp extends TestApp {
  base: string;
}

/** replyline with only the portal role, on a port whose origin is PUBLIC_URL. */
export async function startPortalApp(overrides: Record<string, string> = {}, opts: { https?: boolean } = {}): Promise<PortalTestApp> {
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    try {
      const app = await startTestApp({
        REPLYLINE_ROLES: 'portal',
        HTTP_LISTEN: `127.0.0.1:${port}`,
        // https: as behind a TLS-terminating proxy; the test still speaks plain http to the port.
        PUBLIC_URL: `${opts.https ? 'https' : 'http'}://127.0.0.1:${port}`,
        PORTAL_RESPONSE_FLOOR_MS: '50',
        ...overrides,
      });
      return Object.assign(app, { base: `http://127.0.0.1:${port}` });
    } catch (err) {
      if (attempt > 3 || !String(err).includes('EADDRINUSE')) throw err;
    }
  }
}

export interface Page {
  status: number;
  html: string;
  headers: Headers;
  location: string | null;
}

/**
 * A tiny browser: a cookie jar, no automatic redirects, and forms submitted
 * with the CSRF token of the last page it saw and a same-origin Origin header.
 */
export class Client {
  readonly cookies = new Map<string, string>();
  lastCsrf: string | null = null;

  constructor(
    readonly base: string,
    readonly headers: Record<string, string> = {},
  ) {}

  private store(res: Response): void {
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair!.indexOf('=');
      const name = pair!.slice(0, eq).trim();
      const value = pair!.slice(eq + 1).trim();
      const expired = attrs.some((a) => /max-age=0/i.test(a.trim()) || /expires=thu, 01 jan 1970/i.test(a.trim()));
      if (expired || value === '') this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }

  private cookieHeader(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  async request(method: string, path: string, init: { body?: string | FormData; headers?: Record<string, string> } = {}): Promise<Page> {
    const res = await fetch(path.startsWith('http') ? path : this.base + path, {
      method,
      redirect: 'manual',
      headers: { ...this.headers, cookie: this.cookieHeader(), ...init.headers },
      ...(init.body !== undefined ? { body: init.body } : {}),
    });
    this.store(res);
    const html = await res.text();
    const csrf = /name="_csrf" value="([^"]+)"/.exec(html)?.[1];
    if (csrf) this.lastCsrf = csrf;
    return { status: res.status, html, headers: res.headers, location: res.headers.get('location') };
  }

  get(path: string, headers: Record<string, string> = {}): Promise<Page> {
    return this.request('GET', path, { headers });
  }

  /** Submits a urlencoded form; `_csrf` defaults to the last page's token. */
  async post(
    path: string,
    fields: Record<string, string>,
    opts: { origin?: string | null; csrf?: string | null; headers?: Record<string, string> } = {},
  ): Promise<Page> {
    const form = new URLSearchParams(fields);
    const csrf = opts.csrf === undefined ? this.lastCsrf : opts.csrf;
    if (csrf !== null && !('_csrf' in fields)) form.set('_csrf', csrf);
    const origin = opts.origin === undefined ? this.base : opts.origin;
    return this.request('POST', path, {
      body: form.toString(),
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...(origin ? { origin } : {}), ...opts.headers },
    });
  }

  async postMultipart(path: string, form: FormData, opts: { csrf?: string | null } = {}): Promise<Page> {
    const csrf = opts.csrf === undefined ? this.lastCsrf : opts.csrf;
    if (csrf !== null && !form.has('_csrf')) form.set('_csrf', csrf);
    return this.request('POST', path, { body: form, headers: { origin: this.base } });
  }

  /** Signs in through the real form. */
  async login(email: string, password: string): Promise<Page> {
    await this.get('/login');
    return this.post('/login', { email, password });
  }
}

let counter = 0;
/** Unique per call and per run: tests never assume a clean server. */
export function uniqueEmail(tag = 'user'): string {
  counter += 1;
  return `${tag}-${Date.now().toString(36)}-${counter}-${Math.random().toString(36).slice(2, 7)}@example.test`;
}

export const GOOD_PASSWORD = 'Correct-Horse-9';

export async function seedUser(
  db: Db,
  opts: { email?: string; password?: string | null; role?: UserRole; name?: string | null; locale?: 'en' | 'ja' } = {},
) {
  const user = await createUser(db, {
    email: opts.email ?? uniqueEmail(opts.role ?? 'customer'),
    name: opts.name ?? null,
    role: opts.role ?? 'customer',
    locale: opts.locale ?? 'en',
  });
  const password = opts.password === undefined ? GOOD_PASSWORD : opts.password;
  if (password !== null) {
    await db
      .updateTable('users')
      .set({ password_hash: await hashPassword(password), verified_at: sql`now()` as never })
      .where('id', '=', user.id)
      .execute();
  }
  return user;
}

export async function seedTicket(
  db: Db,
  opts: {
    requesterId: number;
    subject?: string;
    ccIds?: number[];
    status?: TicketStatus;
    messages?: Array<{
      authorId?: number;
      text?: string;
      html?: string | null;
      visibility?: Visibility;
      originalText?: string;
      attachment?: { filename: string; content: string; contentType?: string };
    }>;
  },
) {
  const ticket = await createTicket(db, { subject: opts.subject ?? 'Help needed', requesterId: opts.requesterId, via: 'email' });
  for (const cc of opts.ccIds ?? []) await addParticipant(db, ticket.id, cc, 'cc');
  const messageIds: number[] = [];
  const attachmentIds: number[] = [];
  for (const m of opts.messages ?? [{}]) {
    const msg = await addMessage(db, {
      ticketId: ticket.id,
      authorId: m.authorId ?? opts.requesterId,
      visibility: m.visibility ?? 'public',
      via: 'email',
      bodyText: m.text ?? 'Hello, I need help.',
      bodyHtml: m.html ?? null,
      originalText: m.originalText ?? null,
    });
    messageIds.push(msg.id);
    if (m.attachment) {
      const content = Buffer.from(m.attachment.content);
      attachmentIds.push(
        await addAttachment(db, {
          messageId: msg.id,
          filename: m.attachment.filename,
          contentType: m.attachment.contentType ?? 'text/plain',
          content,
          sha256: 'x'.repeat(64),
        }),
      );
    }
  }
  if (opts.status) await setTicketStatus(db, ticket.id, opts.status);
  return { ticket, messageIds, attachmentIds };
}

/** Outbox rows of a kind for a recipient, newest first. */
export function outboxFor(db: Db, recipient: string, kind?: string) {
  let q = db.selectFrom('outbound_mails').selectAll().where('recipient', '=', recipient);
  if (kind) q = q.where('kind', '=', kind as never);
  return q.orderBy('id', 'desc').execute();
}

/** The raw token from the newest mail of a kind queued for an address (sealed with SECRET_KEY in the row). */
export async function latestMailToken(db: Db, email: string, kind: string, secret: string): Promise<string> {
  const [row] = await outboxFor(db, email, kind);
  if (!row) throw new Error(`no ${kind} mail for ${email}`);
  const token = unseal(secret, (row.payload as { token: string }).token);
  if (!token) throw new Error(`${kind} mail ${row.id} has no sealed token`);
  return token;
}

/** The raw token from the newest set-password mail queued for an address. */
export function latestSetPasswordToken(db: Db, email: string, secret: string): Promise<string> {
  return latestMailToken(db, email, 'password_setup', secret);
}
