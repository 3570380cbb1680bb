import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256, unseal } from '../../src/core/secrets.js';
import { composeOutboundMail } from '../../src/mail/compose.js';
import {
  Client,
  GOOD_PASSWORD,
  latestSetPasswordToken,
  outboxFor,
  seedTicket,
  seedUser,
  startPortalApp,
  uniqueEmail,
  type PortalTestApp,
} from './support.js';

/**
 * Issue #16 at the HTTP level: "Submit a request" (signed in, and signed out
 * with a mailed confirmation), sign-in links, `next` through set-password,
 * the set-password limit that counts only token checks, and BRAND_NAME.
 * TRUST_PROXY lets each test come from its own client address, so the
 * per-IP limits of one test never spill into another.
 */
let app: PortalTestApp;
let staff: Awaited<ReturnType<typeof seedUser>>;
let ipCounter = 0;
const freshIp = () => ({ 'x-forwarded-for': `198.51.100.${++ipCounter}` });

beforeAll(async () => {
  app = await startPortalApp({
    TRUST_PROXY: 'true',
    RATE_PASSWORD_PER_IP: '8',
    RATE_PASSWORD_PER_ACCOUNT: '5',
    RATE_LOGIN_PER_IP: '1000',
    ATTACHMENT_MAX_BYTES: '4096',
    MAX_CCS: '3',
    BRAND_NAME: 'Acme ヘルプ',
  });
  staff = await seedUser(app.ctx.db, { role: 'staff', name: 'Sato' });
});
afterAll(() => app.teardown());

async function signedIn(opts: Parameters<typeof seedUser>[1] = {}) {
  const user = await seedUser(app.ctx.db, opts);
  const client = new Client(app.base, freshIp());
  expect((await client.login(user.email, GOOD_PASSWORD)).status).toBe(303);
  return { user, client };
}

function requestForm(fields: Record<string, string>, files: Array<{ name: string; content: string; type?: string }> = []): FormData {
  const form = new FormData();
  for (const [k, v] of Object.entries(fields)) form.set(k, v);
  for (const f of files) form.append('files', new Blob([f.content], { type: f.type ?? 'text/plain' }), f.name);
  return form;
}

const sealedToken = (payload: unknown) => unseal(app.ctx.config.SECRET_KEY, (payload as { token: string }).token)!;
const ticketsOf = (requesterId: number) => app.ctx.db.selectFrom('tickets').selectAll().where('requester_id', '=', requesterId).execute();

describe('POST /requests/new, signed in', () => {
  it('creates a ticket like a first email: message, files, CCs, acknowledgement, staff notification, an update to the CC', async () => {
    const { user, client } = await signedIn({ name: 'Hanako' });
    const cc = uniqueEmail('colleague');
    await client.get('/requests/new');
    const res = await client.postMultipart(
      '/requests/new',
      requestForm({ subject: '請求書の再発行', description: '先月分の請求書をお願いします。', ccs: `${cc}, ${user.email}` }, [
        { name: 'invoice.txt', content: 'hello' },
      ]),
    );
    expect(res.status).toBe(303);
    const [ticket] = await ticketsOf(user.id);
    expect(res.location).toBe(`${app.base}/requests/${ticket!.id}?notice=created`);
    expect(ticket).toMatchObject({ subject: '請求書の再発行', via: 'portal', status: 'new' });
    const messages = await app.ctx.db.selectFrom('messages').selectAll().where('ticket_id', '=', ticket!.id).execute();
    expect(messages).toHaveLength(1);
    expect(messages[0]).toMatchObject({
      author_id: user.id,
      via: 'portal',
      visibility: 'public',
      body_text: '先月分の請求書をお願いします。',
    });
    const files = await app.ctx.db
      .selectFrom('attachments')
      .select(['filename', 'size'])
      .where('message_id', '=', messages[0]!.id)
      .execute();
    expect(files).toEqual([{ filename: 'invoice.txt', size: 5 }]);
    const participants = await app.ctx.db
      .selectFrom('ticket_participants as p')
      .innerJoin('users as u', 'u.id', 'p.user_id')
      .select(['u.email', 'p.role'])
      .where('p.ticket_id', '=', ticket!.id)
      .orderBy('p.role', 'desc')
      .execute();
    // The requester typed their own address as a CC too: it stays the requester, once.
    expect(participants).toEqual([
      { email: user.email, role: 'requester' },
      { email: cc, role: 'cc' },
    ]);
    const [ack] = await outboxFor(app.ctx.db, user.email, 'acknowledgement');
    expect(ack).toMatchObject({ ticket_id: ticket!.id });
    expect(await outboxFor(app.ctx.db, staff.email, 'staff_notification')).toEqual(
      expect.arrayContaining([expect.objectContaining({ ticket_id: ticket!.id })]),
    );
    expect(await outboxFor(app.ctx.db, cc, 'ticket_update')).toHaveLength(1);
    // The acknowledgement's "get a password" link is pre-filled with the address it went to; the mail is signed with BRAND_NAME.
    const mail = await composeOutboundMail(app.ctx.db, app.ctx.config, ack!);
    expect(mail.text).toContain(`${app.base}/password/new?email=${encodeURIComponent(user.email)}`);
    expect(mail.text).toContain('Acme ヘルプ');
    expect(mail.from.name).toBe('Acme ヘルプ');
    const page = await client.get(res.location!.slice(app.base.length));
    expect(page.html).toContain('Your request was submitted.');
  });

  it('applies the CC rules (our addresses and staff refused) and the required fields, creating nothing', async () => {
    const { user, client } = await signedIn();
    await client.get('/requests/new');
    const cases: Array<Record<string, string>> = [
      { subject: 'x', description: 'y', ccs: staff.email },
      { subject: 'x', description: 'y', ccs: app.ctx.config.SUPPORT_ADDRESSES[0]! },
      { subject: 'x', description: 'y', ccs: 'not-an-address' },
      { subject: '', description: 'y' },
      { subject: 'x', description: '' },
      { subject: 'x', description: 'y', ccs: [1, 2, 3, 4].map((n) => `c${n}@example.test`).join(',') },
    ];
    for (const fields of cases) {
      const res = await client.postMultipart('/requests/new', requestForm(fields));
      expect(res.status, JSON.stringify(fields)).toBe(422);
      expect(res.html).toContain('role="alert"');
    }
    expect(await ticketsOf(user.id)).toHaveLength(0);
  });

  it('refuses a cross-site post (CSRF) and shows the form and header link in Japanese with the brand', async () => {
    const { client } = await signedIn({ locale: 'ja' });
    const page = await client.get('/requests/new');
    expect(page.status).toBe(200);
    expect(page.html).toContain('リクエストを送信');
    expect(page.html).toContain('<a class="brand" href="' + app.base + '/">Acme ヘルプ</a>');
    expect(page.html).not.toContain('name="email"'); // signed in: no name or address fields
    expect((await client.postMultipart('/requests/new', requestForm({ subject: 'x', description: 'y' }), { csrf: 'forged' })).status).toBe(
      403,
    );
    expect((await client.get('/requests')).html).toContain(`href="${app.base}/requests/new"`);
  });
});

describe('POST /requests/new, signed out (REGISTRATION=open)', () => {
  async function submitAnonymously(fields: Record<string, string>, files: Array<{ name: string; content: string }> = [], ip = freshIp()) {
    const client = new Client(app.base, ip);
    await client.get('/requests/new');
    const res = await client.postMultipart('/requests/new', requestForm(fields, files));
    return { client, res };
  }

  it('creates nothing until the mailed link is used; the mail holds only a link, no text the visitor typed', async () => {
    const email = uniqueEmail('visitor');
    const cc = uniqueEmail('visitor-cc');
    const { res } = await submitAnonymously(
      { name: 'Evil <b>Name</b> Marker', email, subject: 'SUBJECT-MARKER click http://evil.example', description: 'BODY-MARKER', ccs: cc },
      [{ name: 'report.txt', content: 'file body' }],
    );
    expect(res.status).toBe(200);
    expect(res.html).toContain('Open the link in it to submit your request');
    expect(await app.ctx.db.selectFrom('users').select('id').where('email', 'in', [email, cc]).execute()).toHaveLength(0);
    const [mail] = await outboxFor(app.ctx.db, email);
    expect(mail).toMatchObject({ kind: 'request_confirmation', user_id: null, ticket_id: null });
    expect(await outboxFor(app.ctx.db, cc)).toHaveLength(0);
    const token = sealedToken(mail!.payload);
    // Only the token's hash is stored with the pending submission (files included), never the token.
    const pending = await app.ctx.db.selectFrom('portal_submissions').selectAll().where('email', '=', email).executeTakeFirstOrThrow();
    expect(pending.token_hash.equals(sha256(token))).toBe(true);
    expect(JSON.stringify(pending)).not.toContain(token);
    const pendingFiles = await app.ctx.db
      .selectFrom('portal_submission_files')
      .select('filename')
      .where('submission_id', '=', pending.id)
      .execute();
    expect(pendingFiles).toEqual([{ filename: 'report.txt' }]);
    const composed = await composeOutboundMail(app.ctx.db, app.ctx.config, mail!);
    for (const typed of ['MARKER', 'Evil', 'evil.example', 'Name']) {
      expect(composed.text + composed.html + composed.subject + composed.to.name).not.toContain(typed);
    }
    expect(composed.text).toContain(`${app.base}/requests/new/confirm?token=${token}`);
  });

  it('the link shows a button (a GET uses nothing up); the POST files the ticket once, signs the requester in and is then spent', async () => {
    const email = uniqueEmail('visitor');
    const cc = uniqueEmail('visitor-cc');
    await submitAnonymously(
      { name: '山田 花子', email, subject: 'ログインできません', description: '助けてください', ccs: `${cc}, ${staff.email}` },
      [{ name: 'screen.txt', content: 'abc' }],
    );
    const token = sealedToken((await outboxFor(app.ctx.db, email, 'request_confirmation'))[0]!.payload);
    const visitor = new Client(app.base, freshIp());
    for (let i = 0; i < 2; i++) {
      const page = await visitor.get(`/requests/new/confirm?token=${token}`);
      expect(page.status).toBe(200);
      expect(page.html).toContain('Submit my request');
    }
    const res = await visitor.post('/requests/new/confirm', { token });
    expect(res.status).toBe(303);
    const user = await app.ctx.db.selectFrom('users').selectAll().where('email', '=', email).executeTakeFirstOrThrow();
    expect(user).toMatchObject({ name: '山田 花子', role: 'customer' });
    expect(user.verified_at).not.toBeNull();
    const [ticket] = await ticketsOf(user.id);
    expect(res.location).toBe(`${app.base}/requests/${ticket!.id}?notice=created`);
    expect(ticket).toMatchObject({ subject: 'ログインできません', via: 'portal' });
    const view = await visitor.get(`/requests/${ticket!.id}`);
    expect(view.status).toBe(200);
    expect(view.html).toContain('screen.txt');
    // The CC is added; a staff address typed as a CC is dropped here, not refused on the form (no enumeration).
    const ccs = await app.ctx.db
      .selectFrom('ticket_participants as p')
      .innerJoin('users as u', 'u.id', 'p.user_id')
      .select('u.email')
      .where('p.ticket_id', '=', ticket!.id)
      .where('p.role', '=', 'cc')
      .execute();
    expect(ccs).toEqual([{ email: cc }]);
    expect(await outboxFor(app.ctx.db, email, 'acknowledgement')).toHaveLength(1);
    expect(await app.ctx.db.selectFrom('portal_submissions').select('id').where('email', '=', email).execute()).toHaveLength(0);
    // Spent: neither the page nor the button works again, and no second ticket appears.
    expect((await visitor.get(`/requests/new/confirm?token=${token}`)).status).toBe(410);
    const again = new Client(app.base, freshIp());
    await again.get('/requests/new');
    expect((await again.post('/requests/new/confirm', { token })).status).toBe(410);
    expect(await ticketsOf(user.id)).toHaveLength(1);
  });

  it('an existing account keeps its name; an expired submission cannot be confirmed and is deleted', async () => {
    const existing = await seedUser(app.ctx.db, { name: 'Real Name', password: null });
    await submitAnonymously({ name: 'Impostor', email: existing.email, subject: 's', description: 'd' });
    const token = sealedToken((await outboxFor(app.ctx.db, existing.email, 'request_confirmation'))[0]!.payload);
    const visitor = new Client(app.base, freshIp());
    await visitor.get('/requests/new');
    expect((await visitor.post('/requests/new/confirm', { token })).status).toBe(303);
    expect((await app.ctx.db.selectFrom('users').select('name').where('id', '=', existing.id).executeTakeFirstOrThrow()).name).toBe(
      'Real Name',
    );

    const late = uniqueEmail('late');
    await submitAnonymously({ name: 'Late', email: late, subject: 's', description: 'd' });
    const lateToken = sealedToken((await outboxFor(app.ctx.db, late, 'request_confirmation'))[0]!.payload);
    await app.ctx.db
      .updateTable('portal_submissions')
      .set({ expires_at: new Date(Date.now() - 1000) })
      .where('email', '=', late)
      .execute();
    expect((await visitor.get(`/requests/new/confirm?token=${lateToken}`)).status).toBe(410);
    expect((await visitor.post('/requests/new/confirm', { token: lateToken })).status).toBe(410);
    expect(await app.ctx.db.selectFrom('users').select('id').where('email', '=', late).execute()).toHaveLength(0);
    // The next submission sweeps expired ones away.
    await submitAnonymously({ name: 'Next', email: uniqueEmail('next'), subject: 's', description: 'd' });
    expect(await app.ctx.db.selectFrom('portal_submissions').select('id').where('email', '=', late).execute()).toHaveLength(0);
  });

  it('is rate-limited per address and per client IP', async () => {
    const email = uniqueEmail('flood');
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await submitAnonymously({ name: 'n', email, subject: 's', description: 'd' })).res.status);
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429]);
    expect(await outboxFor(app.ctx.db, email, 'request_confirmation')).toHaveLength(5);

    const ip = freshIp();
    const perIp: number[] = [];
    for (let i = 0; i < 9; i++)
      perIp.push((await submitAnonymously({ name: 'n', email: uniqueEmail('ip'), subject: 's', description: 'd' }, [], ip)).res.status);
    expect(perIp).toEqual([...Array(8).fill(200), 429]);
  });

  it('validates the name and address, and refuses our own address as the requester', async () => {
    const cases: Array<Record<string, string>> = [
      { name: '', email: uniqueEmail(), subject: 's', description: 'd' },
      { name: 'n', email: 'nope', subject: 's', description: 'd' },
      { name: 'n', email: app.ctx.config.SUPPORT_ADDRESSES[0]!, subject: 's', description: 'd' },
      { name: 'n', email: uniqueEmail(), subject: 's', description: 'd', ccs: app.ctx.config.SUPPORT_ADDRESSES[0]! },
    ];
    for (const fields of cases) {
      const { res } = await submitAnonymously(fields);
      expect(res.status, JSON.stringify(fields)).toBe(422);
    }
  });
});

describe('sign-in links', () => {
  async function askForSignInLink(email: string, next?: string) {
    const client = new Client(app.base, freshIp());
    await client.get(`/login/link${next ? `?next=${encodeURIComponent(next)}` : ''}`);
    return client.post('/login/link', { email, ...(next ? { next } : {}) });
  }
  const latestSignInToken = async (email: string) => sealedToken((await outboxFor(app.ctx.db, email, 'sign_in_link'))[0]!.payload);

  it('answers known and unknown addresses alike and mails a link only to an account', async () => {
    const known = await seedUser(app.ctx.db, { password: null });
    const unknown = uniqueEmail('nobody');
    const a = await askForSignInLink(known.email);
    const b = await askForSignInLink(unknown);
    expect([a.status, b.status]).toEqual([200, 200]);
    const norm = (html: string, email: string) => html.replaceAll(email, 'EMAIL').replace(/name="_csrf" value="[^"]+"/g, '');
    expect(norm(a.html, known.email)).toBe(norm(b.html, unknown));
    expect(await outboxFor(app.ctx.db, known.email, 'sign_in_link')).toHaveLength(1);
    expect(await outboxFor(app.ctx.db, unknown)).toHaveLength(0);
    expect(await app.ctx.db.selectFrom('users').select('id').where('email', '=', unknown).execute()).toHaveLength(0);
  });

  it('lets a customer who never chose a password open their request, once, landing on `next`', async () => {
    const customer = await seedUser(app.ctx.db, { password: null });
    const { ticket } = await seedTicket(app.ctx.db, { requesterId: customer.id, subject: 'By mail only' });
    await askForSignInLink(customer.email, `/requests/${ticket.id}`);
    const [row] = await outboxFor(app.ctx.db, customer.email, 'sign_in_link');
    const token = await latestSignInToken(customer.email);
    const composed = await composeOutboundMail(app.ctx.db, app.ctx.config, row!);
    // The mail carries only the token: `next` waits in the token row.
    expect(composed.text).toContain(`${app.base}/login/link/open?token=${token}\n`);
    const tokenRow = await app.ctx.db.selectFrom('auth_tokens').selectAll().where('user_id', '=', customer.id).executeTakeFirstOrThrow();
    expect(tokenRow).toMatchObject({ purpose: 'sign_in', return_to: `/requests/${ticket.id}` });
    expect(tokenRow.expires_at.getTime() - tokenRow.created_at.getTime()).toBeCloseTo(15 * 60_000, -3);
    expect(tokenRow.token_hash.equals(sha256(token))).toBe(true);

    const browser = new Client(app.base, freshIp());
    expect((await browser.get(`/login/link/open?token=${token}`)).status).toBe(200); // a scanner's GET uses nothing up
    const res = await browser.post('/login/link/open', { token });
    expect(res.status).toBe(303);
    expect(res.location).toBe(`${app.base}/requests/${ticket.id}`);
    expect((await browser.get(`/requests/${ticket.id}`)).html).toContain('By mail only');
    const other = new Client(app.base, freshIp());
    await other.get('/login');
    expect((await other.post('/login/link/open', { token })).status).toBe(410);
    expect((await other.get(`/login/link/open?token=${token}`)).status).toBe(410);
  });

  it('expires after 15 minutes, is superseded by a newer link, and never sets a password (nor a password link signs in)', async () => {
    const customer = await seedUser(app.ctx.db, { password: null });
    await askForSignInLink(customer.email);
    const first = await latestSignInToken(customer.email);
    await askForSignInLink(customer.email);
    const second = await latestSignInToken(customer.email);
    const browser = new Client(app.base, freshIp());
    await browser.get('/login');
    expect((await browser.post('/login/link/open', { token: first })).status).toBe(410);
    expect((await browser.get(`/password/set?token=${second}`)).status).toBe(410);
    await app.ctx.db
      .updateTable('auth_tokens')
      .set({ expires_at: new Date(Date.now() - 1000) })
      .where('user_id', '=', customer.id)
      .where('purpose', '=', 'sign_in')
      .execute();
    expect((await browser.post('/login/link/open', { token: second })).status).toBe(410);

    // A set-password link is not a sign-in link, and asking for one does not cancel a pending sign-in link.
    const pwClient = new Client(app.base, freshIp());
    await pwClient.get('/password/new');
    await pwClient.post('/password/new', { email: customer.email });
    const pwToken = await latestSetPasswordToken(app.ctx.db, customer.email, app.ctx.config.SECRET_KEY);
    expect((await browser.post('/login/link/open', { token: pwToken })).status).toBe(410);
    expect((await browser.get(`/password/set?token=${pwToken}`)).status).toBe(200);
  });

  it('is rate-limited per address like get-a-password', async () => {
    const customer = await seedUser(app.ctx.db);
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await askForSignInLink(customer.email)).status);
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429]);
  });
});

describe('set-password: next and the rate limit', () => {
  it('keeps `next` (local paths only) from get-a-password through the mailed link to sign-in', async () => {
    const customer = await seedUser(app.ctx.db, { password: null });
    const client = new Client(app.base, freshIp());
    const login = await client.get('/login?next=%2Frequests%2F42');
    login.html = login.html.replaceAll('&#x3D;', '=');
    expect(login.html).toContain(`href="${app.base}/password/new?next=%2Frequests%2F42"`);
    expect(login.html).toContain(`href="${app.base}/login/link?next=%2Frequests%2F42"`);
    expect((await client.get('/password/new?next=%2Frequests%2F42')).html).toContain('name="next" value="/requests/42"');
    await client.post('/password/new', { email: customer.email, next: '/requests/42' });
    const token = await latestSetPasswordToken(app.ctx.db, customer.email, app.ctx.config.SECRET_KEY);
    await client.get(`/password/set?token=${token}`);
    const res = await client.post(`/password/set?token=${token}`, { password: GOOD_PASSWORD, password_confirm: GOOD_PASSWORD });
    expect(res.location).toBe(`${app.base}/login?notice=password_set&next=%2Frequests%2F42`);
    const loginPage = await client.get(res.location!.slice(app.base.length));
    expect(loginPage.html).toContain('name="next" value="/requests/42"');
    const signIn = await client.post('/login', { email: customer.email, password: GOOD_PASSWORD, next: '/requests/42' });
    expect(signIn.location).toBe(`${app.base}/requests/42`);

    // Another origin or a protocol-relative path is dropped, never followed.
    const other = await seedUser(app.ctx.db, { password: null });
    await client.get('/password/new');
    await client.post('/password/new', { email: other.email, next: '//evil.example/x' });
    const otherToken = await latestSetPasswordToken(app.ctx.db, other.email, app.ctx.config.SECRET_KEY);
    await client.get(`/password/set?token=${otherToken}`);
    const res2 = await client.post(`/password/set?token=${otherToken}`, { password: GOOD_PASSWORD, password_confirm: GOOD_PASSWORD });
    expect(res2.location).toBe(`${app.base}/login?notice=password_set`);
  });

  it('counts only token checks: a dozen policy rejections do not lock out the holder of a valid link; guessing does', async () => {
    const customer = await seedUser(app.ctx.db, { password: null });
    const ip = freshIp();
    const client = new Client(app.base, ip);
    await client.get('/password/new');
    await client.post('/password/new', { email: customer.email });
    const token = await latestSetPasswordToken(app.ctx.db, customer.email, app.ctx.config.SECRET_KEY);
    await client.get(`/password/set?token=${token}`);
    for (let i = 0; i < 12; i++) {
      expect((await client.post(`/password/set?token=${token}`, { password: 'weak', password_confirm: 'weak' })).status).toBe(422);
    }
    expect((await client.post(`/password/set?token=${token}`, { password: GOOD_PASSWORD, password_confirm: GOOD_PASSWORD })).status).toBe(
      303,
    );

    const guesser = new Client(app.base, freshIp());
    await guesser.get('/login');
    const guesses: number[] = [];
    for (let i = 0; i < 9; i++) guesses.push((await guesser.post('/password/set', { token: 'A'.repeat(21) + String(i) })).status);
    expect(guesses).toEqual([...Array(8).fill(410), 429]);
    // Once limited, a right guess is answered like a wrong one: the limit is not an oracle.
    const victim = await seedUser(app.ctx.db, { password: null });
    const asker = new Client(app.base, freshIp());
    await asker.get('/login/link');
    await asker.post('/login/link', { email: victim.email });
    const signInToken = sealedToken((await outboxFor(app.ctx.db, victim.email, 'sign_in_link'))[0]!.payload);
    expect((await guesser.post('/login/link/open', { token: signInToken })).status).toBe(429);
  });
});
