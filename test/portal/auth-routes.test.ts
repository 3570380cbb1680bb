import { request as httpRequest } from 'node:http';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256 } from '../../src/core/secrets.js';
import { Client, GOOD_PASSWORD, seedTicket, seedUser, startPortalApp, uniqueEmail, type PortalTestApp } from './support.js';

let app: PortalTestApp;
beforeAll(async () => {
  app = await startPortalApp({ SESSION_IDLE_MS: '600000', SESSION_ABSOLUTE_MS: '3600000' });
});
afterAll(() => app.teardown());

const sessionCookie = (res: { headers: Headers }) => res.headers.getSetCookie().find((c) => c.startsWith('rl_session='));

describe('sign in and sessions', () => {
  it('signs in with the right password: 303 to /requests and an HttpOnly SameSite=Lax session cookie (not Secure on http)', async () => {
    const user = await seedUser(app.ctx.db);
    const client = new Client(app.base);
    const res = await client.login(user.email, GOOD_PASSWORD);
    expect(res.status).toBe(303);
    expect(res.location).toBe(`${app.base}/requests`);
    const cookie = sessionCookie(res)!;
    expect(cookie).toMatch(/HttpOnly/);
    expect(cookie).toMatch(/SameSite=Lax/);
    expect(cookie).not.toMatch(/Secure/);
    expect((await client.get('/requests')).status).toBe(200);
  });

  it('stores only the SHA-256 of the 128-bit session id, never the id itself', async () => {
    const user = await seedUser(app.ctx.db);
    const client = new Client(app.base);
    await client.login(user.email, GOOD_PASSWORD);
    const id = client.cookies.get('rl_session')!;
    expect(Buffer.from(id, 'base64url')).toHaveLength(16);
    const rows = await app.ctx.db.selectFrom('sessions').selectAll().where('user_id', '=', user.id).execute();
    expect(rows).toHaveLength(1);
    expect(rows[0]!.id_hash.equals(sha256(id))).toBe(true);
    expect(JSON.stringify(rows)).not.toContain(id);
  });

  it('gives the same 401 page for an unknown address, a wrong password and an account without a password', async () => {
    const withPassword = await seedUser(app.ctx.db);
    const passwordless = await seedUser(app.ctx.db, { password: null });
    const attempts = [
      [uniqueEmail('nobody'), GOOD_PASSWORD],
      [withPassword.email, 'Wrong-Password-1'],
      [passwordless.email, GOOD_PASSWORD],
    ] as const;
    const bodies: string[] = [];
    for (const [email, password] of attempts) {
      const client = new Client(app.base);
      const res = await client.login(email, password);
      expect(res.status).toBe(401);
      expect(res.html).toContain('The email address or password is incorrect.');
      expect(sessionCookie(res)).toBeUndefined();
      bodies.push(res.html.replaceAll(email, 'EMAIL').replace(/name="_csrf" value="[^"]+"/g, ''));
    }
    expect(new Set(bodies).size).toBe(1);
  });

  it('rotates the session id on sign-in: a planted or earlier id is destroyed', async () => {
    const user = await seedUser(app.ctx.db);
    const client = new Client(app.base);
    await client.login(user.email, GOOD_PASSWORD);
    const first = client.cookies.get('rl_session')!;
    await client.login(user.email, GOOD_PASSWORD); // signed-in user visits /login → redirected; sign in again via POST
    await client.post('/login', { email: user.email, password: GOOD_PASSWORD });
    const second = client.cookies.get('rl_session')!;
    expect(second).not.toBe(first);
    const old = new Client(app.base);
    old.cookies.set('rl_session', first);
    expect((await old.get('/requests')).status).toBe(303);
    expect(await app.ctx.db.selectFrom('sessions').select('id_hash').where('id_hash', '=', sha256(first)).execute()).toHaveLength(0);
  });

  it('signs out with POST /logout: the session row is deleted and the old cookie no longer works', async () => {
    const user = await seedUser(app.ctx.db);
    const client = new Client(app.base);
    await client.login(user.email, GOOD_PASSWORD);
    const id = client.cookies.get('rl_session')!;
    await client.get('/requests');
    const out = await client.post('/logout', {});
    expect(out.status).toBe(303);
    expect(out.location).toBe(`${app.base}/login?notice=signed_out`);
    const replay = new Client(app.base);
    replay.cookies.set('rl_session', id);
    expect((await replay.get('/requests')).status).toBe(303);
  });

  it('ends a session idle longer than SESSION_IDLE_MS', async () => {
    const user = await seedUser(app.ctx.db);
    const client = new Client(app.base);
    await client.login(user.email, GOOD_PASSWORD);
    await app.ctx.db
      .updateTable('sessions')
      .set({ last_seen_at: sql`now() - interval '11 minutes'` as never })
      .where('user_id', '=', user.id)
      .execute();
    const res = await client.get('/requests');
    expect(res.status).toBe(303);
    expect(res.location).toContain('/login?notice=expired');
    expect(await app.ctx.db.selectFrom('sessions').select('user_id').where('user_id', '=', user.id).execute()).toHaveLength(0);
  });

  it('ends a session past SESSION_ABSOLUTE_MS even while it is in use', async () => {
    const user = await seedUser(app.ctx.db);
    const client = new Client(app.base);
    await client.login(user.email, GOOD_PASSWORD);
    await app.ctx.db
      .updateTable('sessions')
      .set({ expires_at: sql`now() - interval '1 second'` as never })
      .where('user_id', '=', user.id)
      .execute();
    expect((await client.get('/requests')).status).toBe(303);
  });

  it('refreshes last_seen_at on use, so an active session outlives the idle timeout', async () => {
    const user = await seedUser(app.ctx.db);
    const client = new Client(app.base);
    await client.login(user.email, GOOD_PASSWORD);
    await app.ctx.db
      .updateTable('sessions')
      .set({ last_seen_at: sql`now() - interval '9 minutes'` as never })
      .where('user_id', '=', user.id)
      .execute();
    expect((await client.get('/requests')).status).toBe(200);
    const row = await app.ctx.db
      .selectFrom('sessions')
      .select(sql<boolean>`last_seen_at > now() - interval '1 minute'`.as('fresh'))
      .where('user_id', '=', user.id)
      .executeTakeFirstOrThrow();
    expect(row.fresh).toBe(true);
  });

  it('sends strangers from /requests to /login and back to where they were going', async () => {
    const client = new Client(app.base);
    const res = await client.get('/requests?filter=cc');
    expect(res.status).toBe(303);
    expect(res.location).toBe(`${app.base}/login?notice=expired&next=${encodeURIComponent('/requests?filter=cc')}`);
    const user = await seedUser(app.ctx.db);
    await client.get(res.location!.slice(app.base.length));
    const signedIn = await client.post('/login', { email: user.email, password: GOOD_PASSWORD, next: '/requests?filter=cc' });
    expect(signedIn.location).toBe(`${app.base}/requests?filter=cc`);
  });

  it('never redirects off-site after sign-in, whatever "next" says', async () => {
    const user = await seedUser(app.ctx.db);
    const client = new Client(app.base);
    await client.get('/login');
    const res = await client.post('/login', { email: user.email, password: GOOD_PASSWORD, next: '//evil.test/phish' });
    expect(res.location).toBe(`${app.base}/requests`);
  });

  it('lets staff sign in and offers them the "All requests" tab', async () => {
    const staff = await seedUser(app.ctx.db, { role: 'staff' });
    const client = new Client(app.base);
    await client.login(staff.email, GOOD_PASSWORD);
    const page = await client.get('/requests');
    expect(page.html).toContain('All requests');
    const customer = await seedUser(app.ctx.db);
    const other = new Client(app.base);
    await other.login(customer.email, GOOD_PASSWORD);
    expect((await other.get('/requests')).html).not.toContain('All requests');
  });
});

describe('CSRF', () => {
  it('refuses a POST without an Origin header (403), even with a valid token', async () => {
    const user = await seedUser(app.ctx.db);
    const client = new Client(app.base);
    await client.get('/login');
    const res = await client.post('/login', { email: user.email, password: GOOD_PASSWORD }, { origin: null });
    expect(res.status).toBe(403);
    expect(res.html).toContain('This form has expired or came from another site.');
  });

  it('refuses a POST from a foreign Origin (403)', async () => {
    const user = await seedUser(app.ctx.db);
    const client = new Client(app.base);
    await client.get('/login');
    expect((await client.post('/login', { email: user.email, password: GOOD_PASSWORD }, { origin: 'http://evil.test' })).status).toBe(403);
  });

  it('refuses a same-origin POST without the form token, or with a wrong one (403)', async () => {
    const user = await seedUser(app.ctx.db);
    const client = new Client(app.base);
    await client.get('/login');
    expect((await client.post('/login', { email: user.email, password: GOOD_PASSWORD }, { csrf: null })).status).toBe(403);
    expect((await client.post('/login', { email: user.email, password: GOOD_PASSWORD }, { csrf: 'A'.repeat(43) })).status).toBe(403);
  });

  it("refuses another session's token on a signed-in action, and the action does not happen", async () => {
    const alice = await seedUser(app.ctx.db);
    const mallory = await seedUser(app.ctx.db);
    const { ticket } = await seedTicket(app.ctx.db, { requesterId: alice.id });
    const a = new Client(app.base);
    await a.login(alice.email, GOOD_PASSWORD);
    await a.get('/requests');
    const m = new Client(app.base);
    await m.login(mallory.email, GOOD_PASSWORD);
    await m.get('/requests');
    const res = await a.post(`/requests/${ticket.id}/solve`, {}, { csrf: m.lastCsrf });
    expect(res.status).toBe(403);
    const after = await app.ctx.db.selectFrom('tickets').select('status').where('id', '=', ticket.id).executeTakeFirstOrThrow();
    expect(after.status).toBe('new');
  });

  it('answers a malformed multipart body with the 403 form page, not a 500', async () => {
    const client = new Client(app.base);
    await client.get('/login');
    const res = await client.request('POST', '/login', {
      body: '--x\r\ngarbage',
      headers: { origin: app.base, 'content-type': 'multipart/form-data; boundary=x' },
    });
    expect(res.status).toBe(403);
  });

  it('puts a _csrf hidden input in every POST form on the page', async () => {
    const user = await seedUser(app.ctx.db);
    const { ticket } = await seedTicket(app.ctx.db, { requesterId: user.id });
    const client = new Client(app.base);
    await client.login(user.email, GOOD_PASSWORD);
    const page = await client.get(`/requests/${ticket.id}`);
    const forms = [...page.html.matchAll(/<form[^>]*method="post"[^>]*>([\s\S]*?)<\/form>/g)];
    expect(forms.length).toBeGreaterThanOrEqual(5); // logout, language, reply, cc, solve
    for (const f of forms) expect(f[1]).toMatch(/name="_csrf" value="[A-Za-z0-9_-]{22,}"/);
  });
});

describe('headers, assets and links', () => {
  it('sends a CSP without inline script or style (scripts only from our origin), plus frame, sniffing and referrer protection', async () => {
    const res = await new Client(app.base).get('/login');
    const csp = res.headers.get('content-security-policy')!;
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("style-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('unsafe-inline');
    // Scripts only as files from our origin (/assets/time-zone.js), never inline.
    expect(csp).toContain("script-src 'self'");
    expect(res.headers.get('x-frame-options')).toBe('DENY');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('referrer-policy')).toBe('same-origin');
    expect(res.html).not.toMatch(/<script|style="|\son[a-z]+="/i);
  });

  it('serves the stylesheet from /assets/portal.css as text/css', async () => {
    const page = await new Client(app.base).get('/login');
    const href = /<link rel="stylesheet" href="([^"]+)"/.exec(page.html)![1]!.replaceAll('&#x3D;', '=');
    const res = await fetch(href);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/css');
    expect(res.headers.get('cache-control')).toContain('immutable');
  });

  it('builds every link from PUBLIC_URL and ignores a forged Host header', async () => {
    const forged = await new Promise<{ status: number; location?: string; body: string }>((resolve, reject) => {
      const req = httpRequest(`${app.base}/login`, { headers: { host: 'evil.test' } }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, location: res.headers.location, body }));
      });
      req.on('error', reject);
      req.end();
    });
    // A foreign Host is sent to PUBLIC_URL (see canonical-host.test.ts), never echoed.
    expect(forged.status).toBe(308);
    expect(forged.location).toBe(`${app.base}/login`);
    expect(forged.body).not.toContain('evil.test');
    const html = await (await fetch(forged.location!)).text();
    const urls = [...html.matchAll(/(?:href|action)="([^"#]+)"/g)].map((m) => m[1]!);
    expect(urls.length).toBeGreaterThan(3);
    for (const u of urls) expect(u.startsWith(app.base)).toBe(true);
  });

  it('keeps /healthz working', async () => {
    const res = await fetch(`${app.base}/healthz`);
    expect(res.status).toBe(200);
  });

  it('answers unknown paths with the 404 page', async () => {
    const res = await new Client(app.base).get('/no/such/page');
    expect(res.status).toBe(404);
    expect(res.html).toContain('Not found');
  });
});

describe('language', () => {
  it('follows Accept-Language for visitors (ja-JP → Japanese)', async () => {
    const res = await new Client(app.base, { 'accept-language': 'ja-JP,ja;q=0.9,en;q=0.5' }).get('/login');
    expect(res.html).toContain('<html lang="ja">');
    expect(res.html).toContain('サインイン');
  });

  it('lets the switcher override Accept-Language with a cookie, without JavaScript', async () => {
    const client = new Client(app.base, { 'accept-language': 'en' });
    await client.get('/password/new');
    const res = await client.post('/locale', { locale: 'ja', return_to: '/password/new' });
    expect(res.status).toBe(303);
    expect(res.location).toBe(`${app.base}/password/new`);
    expect((await client.get('/password/new')).html).toContain('パスワードの取得');
  });

  it("uses a signed-in user's own locale, and the switcher changes it for mail too", async () => {
    const user = await seedUser(app.ctx.db, { locale: 'ja' });
    const client = new Client(app.base, { 'accept-language': 'en' });
    await client.login(user.email, GOOD_PASSWORD);
    expect((await client.get('/requests')).html).toContain('自分のリクエスト');
    await client.post('/locale', { locale: 'en', return_to: '/requests' });
    expect((await client.get('/requests')).html).toContain('My requests');
    const row = await app.ctx.db.selectFrom('users').select('locale').where('id', '=', user.id).executeTakeFirstOrThrow();
    expect(row.locale).toBe('en');
  });

  it('shows the sign-in failure in Japanese for a Japanese visitor', async () => {
    const client = new Client(app.base, { 'accept-language': 'ja' });
    const res = await client.login(uniqueEmail(), 'whatever-1A');
    expect(res.status).toBe(401);
    expect(res.html).toContain('メールアドレスまたはパスワードが正しくありません。');
  });
});

describe('https deployment', () => {
  let secure: PortalTestApp;
  beforeAll(async () => {
    secure = await startPortalApp({}, { https: true });
  });
  afterAll(() => secure.teardown());

  it('uses the __Host- prefix and Secure on every cookie, and sends HSTS', async () => {
    const user = await seedUser(secure.ctx.db);
    const client = new Client(secure.base);
    const page = await client.get('/login');
    expect(page.headers.get('strict-transport-security')).toContain('max-age=');
    expect(page.headers.getSetCookie().join('\n')).toMatch(/^__Host-rl_csrf=[^;]+; Path=\/; HttpOnly; Secure; SameSite=Lax/m);
    const res = await client.post(
      '/login',
      { email: user.email, password: GOOD_PASSWORD },
      { origin: `https://127.0.0.1:${new URL(secure.base).port}` },
    );
    expect(res.status).toBe(303);
    const cookie = res.headers.getSetCookie().find((c) => c.startsWith('__Host-rl_session='))!;
    expect(cookie).toMatch(/Secure/);
    expect(cookie).toMatch(/HttpOnly/);
    expect(cookie).toMatch(/Path=\//);
    expect(cookie).not.toMatch(/Domain=/i);
    expect(res.location!.startsWith('https://')).toBe(true);
  });

  it('ignores a session cookie without the __Host- prefix', async () => {
    const user = await seedUser(secure.ctx.db);
    const client = new Client(secure.base);
    await client.get('/login');
    await client.post(
      '/login',
      { email: user.email, password: GOOD_PASSWORD },
      { origin: `https://127.0.0.1:${new URL(secure.base).port}` },
    );
    const id = client.cookies.get('__Host-rl_session')!;
    const plain = new Client(secure.base);
    plain.cookies.set('rl_session', id);
    expect((await plain.get('/requests')).status).toBe(303);
  });
});
