import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { composeOutboundMail } from '../../src/mail/compose.js';
import { Client, GOOD_PASSWORD, outboxFor, seedTicket, seedUser, startPortalApp, type PortalTestApp } from './support.js';

let app: PortalTestApp;
beforeAll(async () => {
  app = await startPortalApp({ RATE_LOGIN_PER_IP: '1000', RATE_PASSWORD_PER_IP: '1000', PORTAL_TIME_ZONE: 'Europe/London' });
});
afterAll(() => app.teardown());

async function signedIn(opts: Parameters<typeof seedUser>[1] = {}) {
  const user = await seedUser(app.ctx.db, opts);
  const client = new Client(app.base);
  expect((await client.login(user.email, GOOD_PASSWORD)).status).toBe(303);
  return { user, client };
}

const userRow = (id: number) => app.ctx.db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirstOrThrow();

describe('/profile', () => {
  /** Signed out, the profile sends you to sign in; its forms need the CSRF token like every POST. */
  it('needs a session and a CSRF token', async () => {
    const anon = await new Client(app.base).get('/profile');
    expect(anon.status).toBe(303);
    expect(anon.location).toContain('/login?notice=expired&next=%2Fprofile');
    const { client } = await signedIn();
    await client.get('/profile');
    const forged = await client.post('/profile', { name: 'X', locale: 'en', time_zone: 'UTC' }, { csrf: 'forged' });
    expect(forged.status).toBe(403);
  });

  /**
   * Name, language and time zone are saved; every time on the portal is then
   * shown in the chosen zone (default: PORTAL_TIME_ZONE), and an unknown zone is refused.
   */
  it('saves name, language and time zone, and shows every time in that zone', async () => {
    const { user, client } = await signedIn();
    await app.ctx.db
      .updateTable('users')
      .set({ created_at: new Date('2026-01-15T00:30:00Z') })
      .where('id', '=', user.id)
      .execute();
    const { ticket } = await seedTicket(app.ctx.db, { requesterId: user.id, subject: 'Timed' });
    await app.ctx.db
      .updateTable('tickets')
      .set({ updated_at: new Date('2026-01-15T00:30:00Z') })
      .where('id', '=', ticket.id)
      .execute();

    const before = await client.get('/requests');
    expect(before.html).toContain('15 Jan 2026, 00:30'); // Europe/London in winter = UTC
    expect(before.html).toContain('Times are shown in Europe/London.');

    const page = await client.get('/profile');
    expect(page.status).toBe(200);
    expect(page.html).toContain('<option selected>Europe/London</option>');
    expect(page.html).toContain('data-browser-time-zone="offer"');

    const bad = await client.post('/profile', { name: 'Taro', locale: 'ja', time_zone: 'Mars/Olympus' });
    expect(bad.status).toBe(422);
    expect(bad.html).toContain('Choose a time zone from the list.');
    expect((await userRow(user.id)).time_zone).toBeNull();

    const saved = await client.post('/profile', { name: '  Yamada   Taro ', locale: 'ja', time_zone: 'Asia/Tokyo' });
    expect(saved.status).toBe(303);
    expect(saved.location).toBe(`${app.base}/profile?notice=saved`);
    const row = await userRow(user.id);
    expect([row.name, row.locale, row.time_zone]).toEqual(['Yamada Taro', 'ja', 'Asia/Tokyo']);

    const after = await client.get('/requests');
    expect(after.html).toContain('2026/01/15 9:30'); // ja-JP, Asia/Tokyo (UTC+9)
    expect(after.html).toContain('時刻は Asia/Tokyo で表示しています。');
    const profile = await client.get('/profile?notice=saved');
    expect(profile.html).toContain('プロフィールを保存しました。');
    expect(profile.html).not.toContain('data-browser-time-zone');
    expect(profile.html).not.toContain('id="time-zone-offer"');
  });

  /** The first-visit offer (filled in by /assets/time-zone.js) sets the zone, or keeps the default; either way once. */
  it('offers the browser zone until the user answers, then never again', async () => {
    const { user, client } = await signedIn();
    const page = await client.get('/requests');
    expect(page.html).toMatch(
      /<form method="post" action="[^"]+\/profile\/time-zone"[^>]*id="time-zone-offer" data-current="Europe\/London" hidden>/,
    );
    expect(page.html).toMatch(/<script src="[^"]+\/assets\/time-zone\.js\?v(?:=|&#x3D;)[0-9a-f]{12}" defer><\/script>/);
    const js = await client.get('/assets/time-zone.js');
    expect(js.headers.get('content-type')).toContain('text/javascript');
    expect(js.html).toContain('Intl.DateTimeFormat().resolvedOptions().timeZone');
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");

    const invalid = await client.post('/profile/time-zone', { time_zone: 'Nowhere/Land', return_to: '/requests' });
    expect(invalid.status).toBe(303);
    expect((await userRow(user.id)).time_zone).toBeNull();
    const used = await client.post('/profile/time-zone', { time_zone: 'America/New_York', return_to: '/requests?status=open' });
    expect(used.location).toBe(`${app.base}/requests?status=open`);
    expect((await userRow(user.id)).time_zone).toBe('America/New_York');
    const later = await client.get('/requests');
    expect(later.html).not.toContain('time-zone-offer');
    expect(later.html).not.toContain('<script');

    const other = await signedIn();
    await other.client.get('/requests');
    await other.client.post('/profile/time-zone', { keep: '1', time_zone: 'Asia/Tokyo', return_to: '/requests' });
    expect((await userRow(other.user.id)).time_zone).toBe('Europe/London');
  });

  /**
   * Changing the password needs the current one and the same policy as
   * set-password; it keeps this session, ends every other one, and mails the
   * "changed" notice with the time in the user's zone.
   */
  it('changes the password: current one required, policy applied, other sessions signed out, notice in the user zone', async () => {
    const { user, client } = await signedIn();
    await app.ctx.db.updateTable('users').set({ time_zone: 'Asia/Tokyo' }).where('id', '=', user.id).execute();
    const elsewhere = new Client(app.base);
    await elsewhere.login(user.email, GOOD_PASSWORD);
    expect((await elsewhere.get('/requests')).status).toBe(200);
    await client.get('/profile');

    const wrong = await client.post('/profile/password', {
      current_password: 'nope',
      password: 'Brand-New-Pass-7',
      password_confirm: 'Brand-New-Pass-7',
    });
    expect(wrong.status).toBe(422);
    expect(wrong.html).toContain('The current password is incorrect.');
    const weak = await client.post('/profile/password', { current_password: GOOD_PASSWORD, password: 'short', password_confirm: 'other' });
    expect(weak.status).toBe(422);
    expect(weak.html).toContain('The password is shorter than 8 characters.');
    expect(weak.html).toContain('The two passwords do not match.');
    expect(await outboxFor(app.ctx.db, user.email, 'password_changed')).toHaveLength(0);

    const ok = await client.post('/profile/password', {
      current_password: GOOD_PASSWORD,
      password: 'Brand-New-Pass-7',
      password_confirm: 'Brand-New-Pass-7',
    });
    expect(ok.status).toBe(303);
    expect(ok.location).toBe(`${app.base}/profile?notice=password_changed`);
    expect((await client.get('/requests')).status).toBe(200); // this browser stays in
    expect((await elsewhere.get('/requests')).status).toBe(303); // the other is out
    expect((await new Client(app.base).login(user.email, GOOD_PASSWORD)).status).toBe(401);
    expect((await new Client(app.base).login(user.email, 'Brand-New-Pass-7')).status).toBe(303);

    const [notice] = await outboxFor(app.ctx.db, user.email, 'password_changed');
    expect(notice).toBeDefined();
    const mail = await composeOutboundMail(app.ctx.db, app.ctx.config, notice!);
    const tokyo = new Intl.DateTimeFormat('en-GB', { dateStyle: 'medium', timeStyle: 'short', timeZone: 'Asia/Tokyo' }).format(
      notice!.created_at,
    );
    expect(mail.text).toContain(`was changed at ${tokyo} Asia/Tokyo`);
  });

  /** "Sign out everywhere" ends every session of the user, this one included. */
  it('signs out everywhere', async () => {
    const { user, client } = await signedIn();
    const elsewhere = new Client(app.base);
    await elsewhere.login(user.email, GOOD_PASSWORD);
    await client.get('/profile');
    const res = await client.post('/profile/sign-out-everywhere', {});
    expect(res.status).toBe(303);
    expect(res.location).toBe(`${app.base}/login?notice=signed_out_everywhere`);
    expect((await client.get('/requests')).status).toBe(303);
    expect((await elsewhere.get('/requests')).status).toBe(303);
    const sessions = await app.ctx.db.selectFrom('sessions').select('user_id').where('user_id', '=', user.id).execute();
    expect(sessions).toHaveLength(0);
    expect((await client.get(res.location!.replace(app.base, ''))).html).toContain('You have been signed out on every device and browser.');
  });
});
