import { unseal } from '../../src/core/secrets.js';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256 } from '../../src/core/secrets.js';
import {
  Client,
  GOOD_PASSWORD,
  latestSetPasswordToken,
  outboxFor,
  seedUser,
  startPortalApp,
  uniqueEmail,
  type PortalTestApp,
} from './support.js';

let app: PortalTestApp;
beforeAll(async () => {
  app = await startPortalApp({ PORTAL_RESPONSE_FLOOR_MS: '300', RATE_PASSWORD_PER_IP: '1000', RATE_LOGIN_PER_IP: '1000' });
});
afterAll(() => app.teardown());

async function askForLink(email: string, headers: Record<string, string> = {}) {
  const client = new Client(app.base, headers);
  await client.get('/password/new');
  const started = performance.now();
  const res = await client.post('/password/new', { email });
  return { res, ms: performance.now() - started };
}

const normalise = (html: string, email: string) => html.replaceAll(email, 'EMAIL').replace(/name="_csrf" value="[^"]+"/g, '');

describe('GET/POST /password/new (get a password / forgot password)', () => {
  it('answers unknown, passwordless and password-holding addresses with the same status and page', async () => {
    const passwordless = await seedUser(app.ctx.db, { password: null });
    const holder = await seedUser(app.ctx.db);
    const unknown = uniqueEmail('nobody');
    const results = await Promise.all([askForLink(unknown), askForLink(passwordless.email), askForLink(holder.email)]);
    const emails = [unknown, passwordless.email, holder.email];
    for (const { res } of results) {
      expect(res.status).toBe(200);
      expect(res.html).toContain('Check your email');
    }
    expect(new Set(results.map(({ res }, i) => normalise(res.html, emails[i]!))).size).toBe(1);
  });

  it('holds every answer to the response floor, so a mailed link costs no visible extra time', async () => {
    const holder = await seedUser(app.ctx.db);
    const known = await askForLink(holder.email);
    const unknown = await askForLink(uniqueEmail('nobody'));
    // Lower bounds only: the floor is a sleep, so these cannot flake. The client's clock
    // spans the server's, so the whole configured floor must be visible here.
    expect(known.ms).toBeGreaterThanOrEqual(300);
    expect(unknown.ms).toBeGreaterThanOrEqual(300);
  });

  it('mails a link only to an existing account: first-password purpose for a passwordless one, reset for a password holder', async () => {
    const passwordless = await seedUser(app.ctx.db, { password: null });
    const holder = await seedUser(app.ctx.db);
    const unknown = uniqueEmail('nobody');
    await askForLink(passwordless.email);
    await askForLink(holder.email);
    await askForLink(unknown);
    const [setup] = await outboxFor(app.ctx.db, passwordless.email, 'password_setup');
    const [reset] = await outboxFor(app.ctx.db, holder.email, 'password_setup');
    expect((setup!.payload as { purpose: string }).purpose).toBe('password_setup');
    expect((reset!.payload as { purpose: string }).purpose).toBe('password_reset');
    expect(await outboxFor(app.ctx.db, unknown)).toHaveLength(0);
    expect(await app.ctx.db.selectFrom('users').select('id').where('email', '=', unknown).execute()).toHaveLength(0);
  });

  it('builds the link from PUBLIC_URL with a 128-bit token, stores only its SHA-256, 24 h for a first password and 1 h for a reset', async () => {
    const passwordless = await seedUser(app.ctx.db, { password: null });
    const holder = await seedUser(app.ctx.db);
    await askForLink(passwordless.email);
    await askForLink(holder.email);
    for (const [user, hours] of [
      [passwordless, 24],
      [holder, 1],
    ] as const) {
      const [mail] = await outboxFor(app.ctx.db, user.email, 'password_setup');
      // The row holds the token sealed, never raw (issue #12); the link is built when the mail is composed.
      const payload = mail!.payload as { token: string; url?: string };
      expect(payload.url).toBeUndefined();
      const token = unseal(app.ctx.config.SECRET_KEY, payload.token)!;
      expect(JSON.stringify(mail!.payload)).not.toContain(token);
      expect(Buffer.from(token, 'base64url')).toHaveLength(16);
      const row = await app.ctx.db
        .selectFrom('auth_tokens')
        .select(['token_hash', sql<number>`extract(epoch from expires_at - created_at)`.as('ttl')])
        .where('user_id', '=', user.id)
        .executeTakeFirstOrThrow();
      expect(row.token_hash.equals(sha256(token))).toBe(true);
      expect(Math.round(Number(row.ttl) / 3600)).toBe(hours);
    }
  });

  it("rejects a malformed address with a form error (422) in the visitor's language", async () => {
    const en = await askForLink('not-an-address');
    expect(en.res.status).toBe(422);
    expect(en.res.html).toContain('Enter a valid email address.');
    const ja = await askForLink('not-an-address', { 'accept-language': 'ja' });
    expect(ja.res.html).toContain('有効なメールアドレスを入力してください。');
  });
});

describe('GET/POST /password/set', () => {
  async function tokenFor(email: string): Promise<string> {
    await askForLink(email);
    return latestSetPasswordToken(app.ctx.db, email, app.ctx.config.SECRET_KEY);
  }

  it('shows the form with the policy for a valid link and 410 for an unknown one', async () => {
    const user = await seedUser(app.ctx.db, { password: null });
    const token = await tokenFor(user.email);
    const ok = await new Client(app.base).get(`/password/set?token=${token}`);
    expect(ok.status).toBe(200);
    expect(ok.html).toContain('be at least 8 characters long');
    expect(ok.html).toContain('contain at least 3 of these');
    expect(ok.html).toContain('not contain the part of your email address before the @');
    expect((await new Client(app.base).get('/password/set?token=AAAAAAAAAAAAAAAAAAAAAA')).status).toBe(410);
    expect((await new Client(app.base).get('/password/set?token=garbage')).status).toBe(410);
  });

  it('lists every policy violation in English and keeps the link usable', async () => {
    // A letters-only local part, so the password below breaks the class rule too.
    const local = `hanako${Math.random()
      .toString(36)
      .replace(/[^a-z]/g, '')}`;
    const user = await seedUser(app.ctx.db, { password: null, email: `${local}@example.test` });
    const token = await tokenFor(user.email);
    const client = new Client(app.base);
    await client.get(`/password/set?token=${token}`);
    const res = await client.post(`/password/set?token=${token}`, { password: local, password_confirm: 'different' });
    expect(res.status).toBe(422);
    expect(res.html).toContain('The password uses fewer than 3 of');
    expect(res.html).toContain('The password contains the part of your email address before the @.');
    expect(res.html).toContain('The two passwords do not match.');
    const short = await client.post(`/password/set?token=${token}`, { password: 'Ab1-', password_confirm: 'Ab1-' });
    expect(short.html).toContain('The password is shorter than 8 characters.');
    expect((await client.get(`/password/set?token=${token}`)).status).toBe(200);
  });

  it('lists policy violations in Japanese for a Japanese visitor', async () => {
    const user = await seedUser(app.ctx.db, { password: null });
    const token = await tokenFor(user.email);
    const client = new Client(app.base, { 'accept-language': 'ja' });
    await client.get(`/password/set?token=${token}`);
    const res = await client.post(`/password/set?token=${token}`, { password: 'abc', password_confirm: 'abd' });
    expect(res.status).toBe(422);
    expect(res.html).toContain('パスワードが 8 文字未満です。');
    expect(res.html).toContain('英小文字・英大文字・数字・記号のうち 3 種類以上を含めてください。');
    expect(res.html).toContain('2つのパスワードが一致しません。');
    expect(res.html).toContain('8 文字以上であること');
  });

  it('sets the password: verifies the address, revokes other sessions, mails a notice, and the new password signs in', async () => {
    const user = await seedUser(app.ctx.db);
    const elsewhere = new Client(app.base);
    await elsewhere.login(user.email, GOOD_PASSWORD);
    expect((await elsewhere.get('/requests')).status).toBe(200);
    await app.ctx.db.updateTable('users').set({ verified_at: null }).where('id', '=', user.id).execute();

    const token = await tokenFor(user.email);
    const client = new Client(app.base);
    await client.get(`/password/set?token=${token}`);
    const res = await client.post(`/password/set?token=${token}`, { password: 'Brand-New-Pass-7', password_confirm: 'Brand-New-Pass-7' });
    expect(res.status).toBe(303);
    expect(res.location).toBe(`${app.base}/login?notice=password_set`);

    const row = await app.ctx.db.selectFrom('users').selectAll().where('id', '=', user.id).executeTakeFirstOrThrow();
    expect(row.verified_at).not.toBeNull();
    expect((await elsewhere.get('/requests')).status).toBe(303);
    expect(await outboxFor(app.ctx.db, user.email, 'password_changed')).toHaveLength(1);
    expect((await new Client(app.base).login(user.email, GOOD_PASSWORD)).status).toBe(401);
    expect((await new Client(app.base).login(user.email, 'Brand-New-Pass-7')).status).toBe(303);
  });

  it('refuses to use a link twice (410)', async () => {
    const user = await seedUser(app.ctx.db, { password: null });
    const token = await tokenFor(user.email);
    const client = new Client(app.base);
    await client.get(`/password/set?token=${token}`);
    const first = await client.post(`/password/set?token=${token}`, { password: 'First-Pass-123', password_confirm: 'First-Pass-123' });
    expect(first.status).toBe(303);
    await client.get('/login');
    const again = await client.post(`/password/set?token=${token}`, { password: 'Second-Pass-123', password_confirm: 'Second-Pass-123' });
    expect(again.status).toBe(410);
    expect((await new Client(app.base).login(user.email, 'First-Pass-123')).status).toBe(303);
  });

  it('lets exactly one of two simultaneous submissions of the same link win', async () => {
    const user = await seedUser(app.ctx.db, { password: null });
    const token = await tokenFor(user.email);
    const a = new Client(app.base);
    const b = new Client(app.base);
    await a.get(`/password/set?token=${token}`);
    await b.get(`/password/set?token=${token}`);
    const results = await Promise.all([
      a.post(`/password/set?token=${token}`, { password: 'Racer-One-111', password_confirm: 'Racer-One-111' }),
      b.post(`/password/set?token=${token}`, { password: 'Racer-Two-222', password_confirm: 'Racer-Two-222' }),
    ]);
    expect(results.map((r) => r.status).sort()).toEqual([303, 410]);
    // A first password: no "changed" notice (see the next test); one winner either way.
    expect(await outboxFor(app.ctx.db, user.email, 'password_changed')).toHaveLength(0);
    const logins = await Promise.all(['Racer-One-111', 'Racer-Two-222'].map((p) => new Client(app.base).login(user.email, p)));
    expect(logins.map((r) => r.status).sort()).toEqual([303, 401]);
  });

  /** The first password set through a link sends no "your password was changed" mail; replacing it does. */
  it('sends no "changed" notice for a first password, and one for a later reset', async () => {
    const user = await seedUser(app.ctx.db, { password: null });
    const first = await tokenFor(user.email);
    const client = new Client(app.base);
    await client.get(`/password/set?token=${first}`);
    expect(
      (await client.post(`/password/set?token=${first}`, { password: 'First-Pass-123', password_confirm: 'First-Pass-123' })).status,
    ).toBe(303);
    expect(await outboxFor(app.ctx.db, user.email, 'password_changed')).toHaveLength(0);
    const reset = await tokenFor(user.email);
    await client.get(`/password/set?token=${reset}`);
    expect(
      (await client.post(`/password/set?token=${reset}`, { password: 'Second-Pass-123', password_confirm: 'Second-Pass-123' })).status,
    ).toBe(303);
    expect(await outboxFor(app.ctx.db, user.email, 'password_changed')).toHaveLength(1);
  });

  it('refuses an expired link (410), on the page and on submit', async () => {
    const user = await seedUser(app.ctx.db, { password: null });
    const token = await tokenFor(user.email);
    await app.ctx.db
      .updateTable('auth_tokens')
      .set({ expires_at: sql`now() - interval '1 second'` as never })
      .where('user_id', '=', user.id)
      .execute();
    const client = new Client(app.base);
    expect((await client.get(`/password/set?token=${token}`)).status).toBe(410);
    await client.get('/login');
    expect(
      (await client.post(`/password/set?token=${token}`, { password: 'Late-Pass-123', password_confirm: 'Late-Pass-123' })).status,
    ).toBe(410);
    expect(
      (await app.ctx.db.selectFrom('users').select('password_hash').where('id', '=', user.id).executeTakeFirstOrThrow()).password_hash,
    ).toBeNull();
  });

  it('invalidates an older link when a newer one is issued', async () => {
    const user = await seedUser(app.ctx.db, { password: null });
    const older = await tokenFor(user.email);
    const newer = await tokenFor(user.email);
    expect(newer).not.toBe(older);
    expect((await new Client(app.base).get(`/password/set?token=${older}`)).status).toBe(410);
    expect((await new Client(app.base).get(`/password/set?token=${newer}`)).status).toBe(200);
  });
});

describe('GET/POST /signup', () => {
  it('creates an account with name and language and mails a first-password link', async () => {
    const email = uniqueEmail('new');
    const client = new Client(app.base, { 'accept-language': 'ja' });
    await client.get('/signup');
    const res = await client.post('/signup', { name: '山田 花子', email });
    expect(res.status).toBe(200);
    expect(res.html).toContain('メールをご確認ください');
    const user = await app.ctx.db.selectFrom('users').selectAll().where('email', '=', email).executeTakeFirstOrThrow();
    expect(user.name).toBe('山田 花子');
    expect(user.locale).toBe('ja');
    expect(user.password_hash).toBeNull();
    const [mail] = await outboxFor(app.ctx.db, email, 'password_setup');
    expect((mail!.payload as { purpose: string }).purpose).toBe('password_setup');
  });

  it('answers a sign-up for an existing address with the same page and mails its owner, without a duplicate or a rename', async () => {
    const holder = await seedUser(app.ctx.db);
    const fresh = uniqueEmail('fresh');
    const pages = [];
    for (const email of [holder.email, fresh]) {
      const client = new Client(app.base);
      await client.get('/signup');
      const res = await client.post('/signup', { name: 'Someone', email });
      expect(res.status).toBe(200);
      pages.push(normalise(res.html, email));
    }
    expect(pages[0]).toBe(pages[1]);
    const rows = await app.ctx.db.selectFrom('users').select(['id', 'name']).where('email', '=', holder.email).execute();
    expect(rows).toEqual([{ id: holder.id, name: null }]); // no duplicate, and a stranger cannot rename it
    const [mail] = await outboxFor(app.ctx.db, holder.email, 'password_setup');
    expect((mail!.payload as { purpose: string }).purpose).toBe('password_reset');
  });

  it('asks for a name and a valid address (422)', async () => {
    const client = new Client(app.base);
    await client.get('/signup');
    const res = await client.post('/signup', { name: '', email: 'nope' });
    expect(res.status).toBe(422);
    expect(res.html).toContain('Enter your name.');
    expect(res.html).toContain('Enter a valid email address.');
  });
});

describe('rate limits and closed registration', () => {
  let strict: PortalTestApp;
  beforeAll(async () => {
    strict = await startPortalApp({
      REGISTRATION: 'closed',
      RATE_LOGIN_PER_ACCOUNT: '3',
      RATE_LOGIN_PER_IP: '8',
      RATE_PASSWORD_PER_ACCOUNT: '2',
      RATE_PASSWORD_PER_IP: '6',
    });
  });
  afterAll(() => strict.teardown());

  it('REGISTRATION=closed: /signup says accounts are created by support, and POST creates nobody (403)', async () => {
    const client = new Client(strict.base);
    const page = await client.get('/signup');
    expect(page.html).toContain('Accounts are created by our support team.');
    const email = uniqueEmail('closed');
    const res = await client.post('/signup', { name: 'X', email });
    expect(res.status).toBe(403);
    expect(await strict.ctx.db.selectFrom('users').select('id').where('email', '=', email).execute()).toHaveLength(0);
  });

  it('REGISTRATION=closed: "Submit a request" needs an account; signed in, a CC may not create one', async () => {
    const visitor = new Client(strict.base);
    const page = await visitor.get('/requests/new');
    expect(page.status).toBe(303);
    expect(page.location).toBe(`${strict.base}/login?notice=expired&next=%2Frequests%2Fnew`);
    expect((await visitor.get('/login')).html).not.toContain(`href="${strict.base}/requests/new"`);
    const email = uniqueEmail('closed-visitor');
    const form = new FormData();
    for (const [k, v] of Object.entries({ name: 'X', email, subject: 's', description: 'd' })) form.set(k, v);
    expect((await visitor.postMultipart('/requests/new', form)).status).toBe(303);
    expect(await strict.ctx.db.selectFrom('portal_submissions').select('id').where('email', '=', email).execute()).toHaveLength(0);
    expect(await outboxFor(strict.ctx.db, email)).toHaveLength(0);

    const user = await seedUser(strict.ctx.db);
    const known = await seedUser(strict.ctx.db, { password: null });
    const client = new Client(strict.base);
    await client.login(user.email, GOOD_PASSWORD);
    await client.get('/requests/new');
    const ask = (ccs: string) => {
      const f = new FormData();
      for (const [k, v] of Object.entries({ subject: 'Closed mode', description: 'd', ccs })) f.set(k, v);
      return client.postMultipart('/requests/new', f);
    };
    const stranger = uniqueEmail('closed-cc');
    expect((await ask(stranger)).status).toBe(422);
    expect(await strict.ctx.db.selectFrom('users').select('id').where('email', '=', stranger).execute()).toHaveLength(0);
    expect((await ask(known.email)).status).toBe(303);
  });

  it('limits sign-in attempts per account: the 4th attempt is refused (429) even with the right password', async () => {
    const user = await seedUser(strict.ctx.db);
    const client = new Client(strict.base);
    for (let i = 0; i < 3; i++) expect((await client.login(user.email, 'Wrong-Pass-1')).status).toBe(401);
    const blocked = await client.login(user.email, GOOD_PASSWORD);
    expect(blocked.status).toBe(429);
    expect(blocked.html).toContain('Too many attempts');
  });

  it('limits an unknown address exactly like a known one, so the limit reveals nothing', async () => {
    const client = new Client(strict.base);
    const email = uniqueEmail('ghost');
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await client.login(email, 'Wrong-Pass-1')).status);
    expect(statuses).toEqual([401, 401, 401, 429]);
  });

  it('limits get-a-password per account with the same 429 for known and unknown addresses', async () => {
    const holder = await seedUser(strict.ctx.db);
    for (const email of [holder.email, uniqueEmail('ghost')]) {
      const client = new Client(strict.base, { 'x-test': email });
      await client.get('/password/new');
      expect((await client.post('/password/new', { email })).status).toBe(200);
      expect((await client.post('/password/new', { email })).status).toBe(200);
      expect((await client.post('/password/new', { email })).status).toBe(429);
    }
    expect(await outboxFor(strict.ctx.db, holder.email, 'password_setup')).toHaveLength(2);
  });

  it('limits set-password attempts per IP: guessing tokens soon gets 429', async () => {
    // Earlier tests in this block already spent some of this IP's budget of 6.
    const client = new Client(strict.base);
    await client.get('/login');
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) {
      statuses.push((await client.post(`/password/set?token=${'A'.repeat(21)}${i}`, { password: 'x', password_confirm: 'x' })).status);
    }
    expect(statuses).toContain(429);
    expect(statuses.slice(statuses.indexOf(429))).toEqual(statuses.slice(statuses.indexOf(429)).map(() => 429));
  });

  it('limits sign-in attempts per IP across different accounts', async () => {
    const client = new Client(strict.base);
    const statuses: number[] = [];
    for (let i = 0; i < 9; i++) statuses.push((await client.login(uniqueEmail('spray'), 'Wrong-Pass-1')).status);
    expect(statuses.at(-1)).toBe(429);
  });
});

describe('while Redis is down', () => {
  let noRedis: PortalTestApp;
  beforeAll(async () => {
    noRedis = await startPortalApp({ REDIS_URL: 'redis://127.0.0.1:1', RATE_LOGIN_PER_ACCOUNT: '2' });
  });
  afterAll(() => noRedis.teardown());

  it('still signs people in (no 500) and still limits attempts with the in-memory fallback', async () => {
    const user = await seedUser(noRedis.ctx.db);
    const client = new Client(noRedis.base);
    expect((await client.login(user.email, GOOD_PASSWORD)).status).toBe(303);
    const other = await seedUser(noRedis.ctx.db);
    const c2 = new Client(noRedis.base);
    expect((await c2.login(other.email, 'Wrong-Pass-1')).status).toBe(401);
    expect((await c2.login(other.email, 'Wrong-Pass-1')).status).toBe(401);
    expect((await c2.login(other.email, GOOD_PASSWORD)).status).toBe(429);
  });

  it('still answers get-a-password and keeps the mail in the outbox for the sweeper', async () => {
    const user = await seedUser(noRedis.ctx.db, { password: null });
    const client = new Client(noRedis.base);
    await client.get('/password/new');
    expect((await client.post('/password/new', { email: user.email })).status).toBe(200);
    const [mail] = await outboxFor(noRedis.ctx.db, user.email, 'password_setup');
    expect(mail!.status).toBe('queued');
  });
});
