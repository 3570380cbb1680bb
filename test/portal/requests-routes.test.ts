import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, GOOD_PASSWORD, outboxFor, seedTicket, seedUser, startPortalApp, uniqueEmail, type PortalTestApp } from './support.js';

let app: PortalTestApp;
let staffEmail: string;
beforeAll(async () => {
  app = await startPortalApp({ ATTACHMENT_MAX_BYTES: '2048', MAX_CCS: '3', RATE_LOGIN_PER_IP: '1000' });
  staffEmail = (await seedUser(app.ctx.db, { role: 'staff', name: 'Sato (Support)' })).email;
});
afterAll(() => app.teardown());

async function signedIn(opts: Parameters<typeof seedUser>[1] = {}) {
  const user = await seedUser(app.ctx.db, opts);
  const client = new Client(app.base);
  expect((await client.login(user.email, GOOD_PASSWORD)).status).toBe(303);
  return { user, client };
}

const rowIds = (html: string) => [...html.matchAll(/<td data-label="Number">#(\d+)<\/td>/g)].map((m) => Number(m[1]));

describe('GET /requests', () => {
  it('shows my requests under "My requests" and CC\'d ones under ?filter=cc, never anyone else\'s', async () => {
    const { user, client } = await signedIn();
    const stranger = await seedUser(app.ctx.db);
    const mine = await seedTicket(app.ctx.db, { requesterId: user.id, subject: 'Mine' });
    const ccd = await seedTicket(app.ctx.db, { requesterId: stranger.id, ccIds: [user.id], subject: 'Copied' });
    const foreign = await seedTicket(app.ctx.db, { requesterId: stranger.id, subject: 'Not yours' });
    const minePage = await client.get('/requests');
    expect(rowIds(minePage.html)).toEqual([mine.ticket.id]);
    const ccPage = await client.get('/requests?filter=cc');
    expect(rowIds(ccPage.html)).toEqual([ccd.ticket.id]);
    expect(ccPage.html).toContain('aria-current="page" class="current">Requests I&#x27;m CC&#x27;d on');
    expect(minePage.html + ccPage.html).not.toContain('Not yours');
    expect(rowIds((await client.get('/requests?filter=all')).html)).toEqual([mine.ticket.id]); // "all" is staff-only
    void foreign;
  });

  it('orders by newest activity first and shows number, subject, status and last update', async () => {
    const { user, client } = await signedIn();
    const a = await seedTicket(app.ctx.db, { requesterId: user.id, subject: 'Older' });
    const b = await seedTicket(app.ctx.db, { requesterId: user.id, subject: 'Newer' });
    await app.ctx.db
      .updateTable('tickets')
      .set({ updated_at: sql`now() - interval '1 day'` as never })
      .where('id', '=', b.ticket.id)
      .execute();
    const page = await client.get('/requests');
    expect(rowIds(page.html)).toEqual([a.ticket.id, b.ticket.id]);
    expect(page.html).toMatch(
      new RegExp(
        `#${a.ticket.id}</td>\\s*<td[^>]*><a href="${app.base}/requests/${a.ticket.id}">Older</a></td>\\s*<td[^>]*><span class="status status-new">Open</span></td>\\s*<td[^>]*><time datetime="`,
      ),
    );
  });

  it('filters by status: open (new+open), pending, solved, closed', async () => {
    const { user, client } = await signedIn();
    const ids: Record<string, number> = {};
    for (const status of ['new', 'open', 'pending', 'solved', 'closed'] as const) {
      ids[status] = (await seedTicket(app.ctx.db, { requesterId: user.id, status })).ticket.id;
    }
    const ids_ = (q: string) => client.get(`/requests?status=${q}`).then((p) => rowIds(p.html).sort((x, y) => x - y));
    expect(await ids_('open')).toEqual([ids.new!, ids.open!].sort((x, y) => x - y));
    expect(await ids_('pending')).toEqual([ids.pending]);
    expect(await ids_('solved')).toEqual([ids.solved]);
    expect(await ids_('closed')).toEqual([ids.closed]);
    expect(await ids_('any')).toHaveLength(5);
    expect(await ids_('bogus')).toHaveLength(5);
  });

  it('paginates 25 a page with next/previous links that keep the tab and filter', async () => {
    const { user, client } = await signedIn();
    const requester = await seedUser(app.ctx.db);
    await app.ctx.db
      .insertInto('tickets')
      .columns(['subject', 'requester_id', 'status', 'updated_at'])
      .expression(sql`SELECT 'Bulk ' || g, ${requester.id}, 'open', now() - g * interval '1 minute' FROM generate_series(1, 30) g`)
      .execute();
    await app.ctx.db
      .insertInto('ticket_participants')
      .columns(['ticket_id', 'user_id', 'role'])
      .expression(sql`SELECT id, ${user.id}, 'cc' FROM tickets WHERE requester_id = ${requester.id}`)
      .execute();
    const first = await client.get('/requests?filter=cc&status=open');
    expect(rowIds(first.html)).toHaveLength(25);
    expect(first.html).toContain(`rel="next" href="${app.base}/requests?filter&#x3D;cc&amp;status&#x3D;open&amp;page&#x3D;2"`);
    const second = await client.get('/requests?filter=cc&status=open&page=2');
    expect(rowIds(second.html)).toHaveLength(5);
    expect(second.html).toContain('rel="prev"');
    expect(second.html).not.toContain('rel="next"');
    expect(new Set([...rowIds(first.html), ...rowIds(second.html)]).size).toBe(30);
  });

  it('escapes a subject carrying HTML', async () => {
    const { user, client } = await signedIn();
    await seedTicket(app.ctx.db, { requesterId: user.id, subject: '<img src=x onerror=alert(1)>' });
    const page = await client.get('/requests');
    expect(page.html).toContain('&lt;img src&#x3D;x onerror&#x3D;alert(1)&gt;');
    expect(page.html).not.toContain('<img src=x');
  });
});

describe('GET /requests/:id', () => {
  it('shows the public thread oldest first with author and time, and never internal notes', async () => {
    const { user, client } = await signedIn({ name: 'Taro Yamada' });
    const staff = await seedUser(app.ctx.db, { role: 'staff', name: 'Agent Smith' });
    const { ticket } = await seedTicket(app.ctx.db, {
      requesterId: user.id,
      messages: [
        { text: 'FIRST customer message' },
        { authorId: staff.id, text: 'SECRET internal note', visibility: 'internal' },
        { authorId: staff.id, text: 'SECOND public staff reply' },
      ],
    });
    const page = await client.get(`/requests/${ticket.id}`);
    expect(page.status).toBe(200);
    expect(page.html.indexOf('FIRST customer message')).toBeLessThan(page.html.indexOf('SECOND public staff reply'));
    expect(page.html).not.toContain('SECRET internal note');
    expect(page.html).toContain('Taro Yamada &lt;');
    expect(page.html).toContain('<strong class="author">Agent Smith</strong>');
    expect(page.html).not.toContain(staff.email); // staff addresses stay private
    expect(page.html).toMatch(/<time datetime="\d{4}-/);
  });

  it('shows mail HTML sanitised and plain text escaped; no script, handler or javascript: survives', async () => {
    const { user, client } = await signedIn();
    const { ticket } = await seedTicket(app.ctx.db, {
      requesterId: user.id,
      messages: [
        {
          text: 'x',
          html: '<p>Hello <b>there</b><script>alert(1)</script><img src="x" onerror="alert(2)"><a href="javascript:alert(3)">c</a></p>',
        },
        { text: '<script>alert(4)</script> & plain' },
      ],
    });
    const page = await client.get(`/requests/${ticket.id}`);
    expect(page.html).toContain('<p>Hello <b>there</b>');
    expect(page.html).toContain('&lt;script&gt;alert(4)&lt;/script&gt; &amp; plain');
    // Our own same-origin time-zone helper is the only script a page may carry.
    expect(page.html.replace(/<script src="[^"]*\/assets\/time-zone\.js[^"]*" defer><\/script>/, '')).not.toMatch(
      /<script|onerror|javascript:/i,
    );
  });

  it('collapses quoted history into a <details> that reveals the full original', async () => {
    const { user, client } = await signedIn();
    const { ticket } = await seedTicket(app.ctx.db, {
      requesterId: user.id,
      messages: [
        { text: 'Thanks, that fixed it.', originalText: 'Thanks, that fixed it.\n\nOn Mon, Support wrote:\n> Try turning it off and on' },
      ],
    });
    const page = await client.get(`/requests/${ticket.id}`);
    expect(page.html).toMatch(
      /<details class="original">\s*<summary>Show the full original message<\/summary>[\s\S]*&gt; Try turning it off and on/,
    );
  });

  it('answers 404 to a non-participant for the request, its attachments and every write, and changes nothing', async () => {
    const owner = await seedUser(app.ctx.db);
    const { ticket, attachmentIds } = await seedTicket(app.ctx.db, {
      requesterId: owner.id,
      messages: [{ text: 'private', attachment: { filename: 'secret.txt', content: 'top secret' } }],
    });
    const { client } = await signedIn();
    await client.get('/requests');
    expect((await client.get(`/requests/${ticket.id}`)).status).toBe(404);
    expect((await client.get(`/requests/${ticket.id}/attachments/${attachmentIds[0]}`)).status).toBe(404);
    expect((await client.post(`/requests/${ticket.id}/solve`, {})).status).toBe(404);
    expect((await client.post(`/requests/${ticket.id}/ccs`, { email: uniqueEmail('sneak') })).status).toBe(404);
    const form = new FormData();
    form.set('body', 'sneaky reply');
    expect((await client.postMultipart(`/requests/${ticket.id}/comments`, form)).status).toBe(404);
    const after = await app.ctx.db.selectFrom('tickets').select('status').where('id', '=', ticket.id).executeTakeFirstOrThrow();
    expect(after.status).toBe('new');
    expect(await app.ctx.db.selectFrom('messages').select('id').where('ticket_id', '=', ticket.id).execute()).toHaveLength(1);
    expect(await app.ctx.db.selectFrom('ticket_participants').select('user_id').where('ticket_id', '=', ticket.id).execute()).toHaveLength(
      1,
    );
  });

  it('answers 404 for an attachment of another ticket fetched through my own ticket id, and for odd ids', async () => {
    const { user, client } = await signedIn();
    const other = await seedUser(app.ctx.db);
    const mine = await seedTicket(app.ctx.db, { requesterId: user.id });
    const theirs = await seedTicket(app.ctx.db, {
      requesterId: other.id,
      messages: [{ attachment: { filename: 'x.txt', content: 'theirs' } }],
    });
    expect((await client.get(`/requests/${mine.ticket.id}/attachments/${theirs.attachmentIds[0]}`)).status).toBe(404);
    expect((await client.get('/requests/abc')).status).toBe(404);
    expect((await client.get('/requests/1e3')).status).toBe(404);
    expect((await client.get('/requests/999999999')).status).toBe(404);
  });

  it("serves a participant's attachment as a download with nosniff, never inline", async () => {
    const { user, client } = await signedIn();
    const { ticket, attachmentIds } = await seedTicket(app.ctx.db, {
      requesterId: user.id,
      messages: [{ attachment: { filename: '見積書<script>.html', content: '<script>alert(1)</script>', contentType: 'text/html' } }],
    });
    const page = await client.get(`/requests/${ticket.id}`);
    expect(page.html).toContain(`/requests/${ticket.id}/attachments/${attachmentIds[0]}`);
    const res = await client.get(`/requests/${ticket.id}/attachments/${attachmentIds[0]}`);
    expect(res.status).toBe(200);
    expect(res.html).toBe('<script>alert(1)</script>');
    expect(res.headers.get('content-disposition')).toMatch(/^attachment; filename="[^"]*"; filename\*=UTF-8''%E8%A6%8B%E7%A9%8D%E6%9B%B8/);
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('content-security-policy')).toContain('sandbox');
  });

  it('hides attachments of internal notes (404) even from participants', async () => {
    const { user, client } = await signedIn();
    const staff = await seedUser(app.ctx.db, { role: 'staff' });
    const { ticket, attachmentIds } = await seedTicket(app.ctx.db, {
      requesterId: user.id,
      messages: [{}, { authorId: staff.id, visibility: 'internal', attachment: { filename: 'internal.txt', content: 'x' } }],
    });
    expect((await client.get(`/requests/${ticket.id}/attachments/${attachmentIds[0]}`)).status).toBe(404);
  });

  it('lets staff read any request and reply to it; the requester is notified', async () => {
    const customer = await seedUser(app.ctx.db);
    const { ticket } = await seedTicket(app.ctx.db, { requesterId: customer.id, subject: 'Staff can see' });
    const { user: staff, client } = await signedIn({ role: 'staff', name: 'Helper' });
    const all = await client.get('/requests?filter=all');
    expect(rowIds(all.html)).toContain(ticket.id);
    const page = await client.get(`/requests/${ticket.id}`);
    expect(page.status).toBe(200);
    const form = new FormData();
    form.set('body', 'Reply from staff via the portal');
    const res = await client.postMultipart(`/requests/${ticket.id}/comments`, form);
    expect(res.status).toBe(303);
    const msg = await app.ctx.db
      .selectFrom('messages')
      .selectAll()
      .where('ticket_id', '=', ticket.id)
      .where('author_id', '=', staff.id)
      .executeTakeFirstOrThrow();
    expect(msg.visibility).toBe('public');
    expect(await outboxFor(app.ctx.db, customer.email, 'ticket_update')).toHaveLength(1);
  });
});

describe('POST /requests/:id/comments', () => {
  it('adds a public portal comment, reopens a solved request and notifies staff and the other participants', async () => {
    const { user, client } = await signedIn();
    const cc = await seedUser(app.ctx.db);
    const { ticket } = await seedTicket(app.ctx.db, { requesterId: user.id, ccIds: [cc.id], status: 'solved' });
    await client.get(`/requests/${ticket.id}`);
    const form = new FormData();
    form.set('body', 'It broke again.');
    const res = await client.postMultipart(`/requests/${ticket.id}/comments`, form);
    expect(res.status).toBe(303);
    expect(res.location).toMatch(new RegExp(`/requests/${ticket.id}\\?notice=commented#message-\\d+$`));
    const t = await app.ctx.db.selectFrom('tickets').select('status').where('id', '=', ticket.id).executeTakeFirstOrThrow();
    expect(t.status).toBe('open');
    const msg = await app.ctx.db
      .selectFrom('messages')
      .selectAll()
      .where('ticket_id', '=', ticket.id)
      .orderBy('id', 'desc')
      .executeTakeFirstOrThrow();
    expect(msg).toMatchObject({ body_text: 'It broke again.', via: 'portal', visibility: 'public', author_id: user.id });
    expect(await outboxFor(app.ctx.db, staffEmail, 'staff_notification')).not.toHaveLength(0);
    expect(await outboxFor(app.ctx.db, cc.email, 'ticket_update')).toHaveLength(1);
    expect(await outboxFor(app.ctx.db, user.email)).toHaveLength(0);
    const page = await client.get(res.location!.slice(app.base.length));
    expect(page.html).toContain('Your reply was added.');
    expect(page.html).toContain('It broke again.');
  });

  it('stores uploaded files with a sanitised name, as attachments of the comment', async () => {
    const { user, client } = await signedIn();
    const { ticket } = await seedTicket(app.ctx.db, { requesterId: user.id });
    await client.get(`/requests/${ticket.id}`);
    const form = new FormData();
    form.set('body', 'See attached');
    form.append('files', new Blob(['hello'], { type: 'text/plain' }), '../../evil\r\nname.txt');
    form.append('files', new Blob([new Uint8Array([1, 2, 3])], { type: 'application/octet-stream' }), 'データ.bin');
    expect((await client.postMultipart(`/requests/${ticket.id}/comments`, form)).status).toBe(303);
    const rows = await app.ctx.db
      .selectFrom('attachments as a')
      .innerJoin('messages as m', 'm.id', 'a.message_id')
      .select(['a.filename', 'a.size', 'a.content_type', 'a.sha256'])
      .where('m.ticket_id', '=', ticket.id)
      .orderBy('a.id')
      .execute();
    // The client may already have encoded the CR/LF; either way no directory and no control character is stored.
    expect(rows[0]!.filename).toMatch(/^evil ?name\.txt$/);
    expect(rows[1]!.filename).toBe('データ.bin');
    expect(rows[0]).toMatchObject({
      size: 5,
      content_type: 'text/plain',
      sha256: '2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824',
    });
  });

  it('refuses a file over ATTACHMENT_MAX_BYTES with 413 and stores nothing', async () => {
    const { user, client } = await signedIn();
    const { ticket } = await seedTicket(app.ctx.db, { requesterId: user.id });
    await client.get(`/requests/${ticket.id}`);
    const form = new FormData();
    form.set('body', 'too big');
    form.append('files', new Blob([new Uint8Array(4096)]), 'big.bin');
    const res = await client.postMultipart(`/requests/${ticket.id}/comments`, form);
    expect(res.status).toBe(413);
    expect(await app.ctx.db.selectFrom('messages').select('id').where('ticket_id', '=', ticket.id).execute()).toHaveLength(1);
  });

  it('refuses a comment form larger than the upload cap (413) before parsing it', async () => {
    const { user, client } = await signedIn();
    const { ticket } = await seedTicket(app.ctx.db, { requesterId: user.id });
    await client.get(`/requests/${ticket.id}`);
    const form = new FormData();
    form.set('body', 'x'.repeat(600 * 1024));
    expect((await client.postMultipart(`/requests/${ticket.id}/comments`, form)).status).toBe(413);
    expect(await app.ctx.db.selectFrom('messages').select('id').where('ticket_id', '=', ticket.id).execute()).toHaveLength(1);
  });

  it('sends a signed-out upload to the sign-in page without storing anything', async () => {
    const owner = await seedUser(app.ctx.db);
    const { ticket } = await seedTicket(app.ctx.db, { requesterId: owner.id });
    const stranger = new Client(app.base);
    await stranger.get('/login');
    const form = new FormData();
    form.set('body', 'anonymous');
    const res = await stranger.postMultipart(`/requests/${ticket.id}/comments`, form);
    expect(res.status).toBe(303);
    expect(res.location).toContain('/login');
    expect(await app.ctx.db.selectFrom('messages').select('id').where('ticket_id', '=', ticket.id).execute()).toHaveLength(1);
  });

  it('refuses an empty comment with 422 and stores nothing', async () => {
    const { user, client } = await signedIn();
    const { ticket } = await seedTicket(app.ctx.db, { requesterId: user.id });
    await client.get(`/requests/${ticket.id}`);
    const form = new FormData();
    form.set('body', '   ');
    const res = await client.postMultipart(`/requests/${ticket.id}/comments`, form);
    expect(res.status).toBe(422);
    expect(res.html).toContain('Write a reply before sending.');
    expect(await app.ctx.db.selectFrom('messages').select('id').where('ticket_id', '=', ticket.id).execute()).toHaveLength(1);
  });
});

describe('POST /requests/:id/ccs and /solve', () => {
  it('adds a CC by address, creating an implicit account; the CC then sees it under "CC\'d on"', async () => {
    const { user, client } = await signedIn();
    const { ticket } = await seedTicket(app.ctx.db, { requesterId: user.id });
    await client.get(`/requests/${ticket.id}`);
    const email = uniqueEmail('colleague');
    const res = await client.post(`/requests/${ticket.id}/ccs`, { email: email.toUpperCase() });
    expect(res.status).toBe(303);
    const cc = await app.ctx.db.selectFrom('users').selectAll().where('email', '=', email).executeTakeFirstOrThrow();
    expect(cc.password_hash).toBeNull();
    const part = await app.ctx.db
      .selectFrom('ticket_participants')
      .select('role')
      .where('ticket_id', '=', ticket.id)
      .where('user_id', '=', cc.id)
      .executeTakeFirstOrThrow();
    expect(part.role).toBe('cc');
    await app.ctx.db
      .updateTable('users')
      .set({
        password_hash: (await app.ctx.db.selectFrom('users').select('password_hash').where('id', '=', user.id).executeTakeFirstOrThrow())
          .password_hash,
      })
      .where('id', '=', cc.id)
      .execute();
    const ccClient = new Client(app.base);
    await ccClient.login(email, GOOD_PASSWORD);
    expect(rowIds((await ccClient.get('/requests?filter=cc')).html)).toEqual([ticket.id]);
  });

  it('refuses an invalid address, our own support and reply addresses, and more than MAX_CCS (422)', async () => {
    const { user, client } = await signedIn();
    const { ticket } = await seedTicket(app.ctx.db, { requesterId: user.id });
    await client.get(`/requests/${ticket.id}`);
    expect((await client.post(`/requests/${ticket.id}/ccs`, { email: 'nope' })).status).toBe(422);
    const own = await client.post(`/requests/${ticket.id}/ccs`, { email: 'support@help.test' });
    expect(own.status).toBe(422);
    expect(own.html).toContain('That address cannot be added as a CC.');
    expect((await client.post(`/requests/${ticket.id}/ccs`, { email: 'support+t1.abc@help.test' })).status).toBe(422);
    for (let i = 0; i < 3; i++) expect((await client.post(`/requests/${ticket.id}/ccs`, { email: uniqueEmail('cc') })).status).toBe(303);
    const fourth = await client.post(`/requests/${ticket.id}/ccs`, { email: uniqueEmail('cc') });
    expect(fourth.status).toBe(422);
    expect(fourth.html).toContain('This request already has the maximum number of CCs.');
  });

  it('lets the requester and a CC mark a request solved', async () => {
    const { user, client } = await signedIn();
    const { user: ccUser, client: ccClient } = await signedIn();
    const one = await seedTicket(app.ctx.db, { requesterId: user.id });
    const two = await seedTicket(app.ctx.db, { requesterId: user.id, ccIds: [ccUser.id] });
    await client.get(`/requests/${one.ticket.id}`);
    expect((await client.post(`/requests/${one.ticket.id}/solve`, {})).status).toBe(303);
    await ccClient.get(`/requests/${two.ticket.id}`);
    expect((await ccClient.post(`/requests/${two.ticket.id}/solve`, {})).status).toBe(303);
    const statuses = await app.ctx.db.selectFrom('tickets').select('status').where('id', 'in', [one.ticket.id, two.ticket.id]).execute();
    expect(statuses.map((s) => s.status)).toEqual(['solved', 'solved']);
  });

  it('keeps a closed request read-only: no forms, and every write answers 409 without changing it', async () => {
    const { user, client } = await signedIn();
    const { ticket } = await seedTicket(app.ctx.db, { requesterId: user.id, status: 'closed' });
    const page = await client.get(`/requests/${ticket.id}`);
    expect(page.html).toContain('This request is closed');
    expect(page.html).not.toContain('/comments"');
    expect(page.html).not.toContain('/solve"');
    const form = new FormData();
    form.set('body', 'late reply');
    expect((await client.postMultipart(`/requests/${ticket.id}/comments`, form)).status).toBe(409);
    expect((await client.post(`/requests/${ticket.id}/solve`, {})).status).toBe(409);
    expect((await client.post(`/requests/${ticket.id}/ccs`, { email: uniqueEmail('late') })).status).toBe(409);
    const t = await app.ctx.db.selectFrom('tickets').select('status').where('id', '=', ticket.id).executeTakeFirstOrThrow();
    expect(t.status).toBe('closed');
    expect(await app.ctx.db.selectFrom('messages').select('id').where('ticket_id', '=', ticket.id).execute()).toHaveLength(1);
  });
});
