import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SEARCH_CANDIDATE_CAP, WALK_LIMIT } from '../../src/db/queries/request-lists.js';
import { Client, GOOD_PASSWORD, seedTicket, seedUser, startPortalApp, type PortalTestApp } from './support.js';

let app: PortalTestApp;
beforeAll(async () => {
  app = await startPortalApp({ RATE_LOGIN_PER_IP: '1000' });
});
afterAll(() => app.teardown());

async function signedIn(opts: Parameters<typeof seedUser>[1] = {}) {
  const user = await seedUser(app.ctx.db, opts);
  const client = new Client(app.base);
  expect((await client.login(user.email, GOOD_PASSWORD)).status).toBe(303);
  return { user, client };
}

const rowIds = (html: string) => [...html.matchAll(/<td data-label="(?:Number|番号)">#(\d+)<\/td>/g)].map((m) => Number(m[1]));
const search = (client: Client, q: string, extra = '') =>
  client.get(`/requests?q=${encodeURIComponent(q)}${extra}`).then((p) => rowIds(p.html).sort((a, b) => a - b));

describe('search in My activity', () => {
  /**
   * Substring search over subject and public messages, Japanese included: a
   * three-character term (trigram index path) and one- and two-character terms
   * (no trigram: the walk path) find the same tickets; another user's ticket and
   * an internal note containing the term never match.
   */
  it('finds kanji and kana substrings in subjects and public messages, 1 to 3+ characters, only among my requests', async () => {
    const { user, client } = await signedIn();
    const stranger = await seedUser(app.ctx.db);
    const staff = await seedUser(app.ctx.db, { role: 'staff' });
    const bySubject = await seedTicket(app.ctx.db, { requesterId: user.id, subject: '3月分の請求書について' });
    const byBody = await seedTicket(app.ctx.db, {
      requesterId: user.id,
      subject: 'お問い合わせ',
      messages: [{ text: 'お世話になっております。先月の請求書が届いていません。' }],
    });
    const internalOnly = await seedTicket(app.ctx.db, {
      requesterId: user.id,
      subject: 'Delivery',
      messages: [{ text: 'Where is my parcel?' }, { authorId: staff.id, text: '請求書の件は社内で確認', visibility: 'internal' }],
    });
    await seedTicket(app.ctx.db, { requesterId: stranger.id, subject: '請求書の再発行', messages: [{ text: '請求書' }] });
    await seedTicket(app.ctx.db, { requesterId: user.id, subject: 'Unrelated', messages: [{ text: 'nothing here' }] });

    const both = [bySubject.ticket.id, byBody.ticket.id].sort((a, b) => a - b);
    expect(await search(client, '請求書')).toEqual(both);
    expect(await search(client, '請求')).toEqual(both);
    expect(await search(client, '書')).toEqual(both);
    expect(await search(client, 'せわ')).toEqual([]); // hiragana substring that is not there
    expect(await search(client, 'お世話')).toEqual([byBody.ticket.id]);
    expect(await search(client, 'PARCEL')).toEqual([internalOnly.ticket.id]); // case-insensitive
    // Several terms: all must appear, in the subject or any public message.
    expect(await search(client, '請求書　届いて')).toEqual([byBody.ticket.id]);
    expect(await search(client, 'zzz-none')).toEqual([]);
    const page = await client.get(`/requests?q=${encodeURIComponent('請求書')}`);
    expect(page.html).toContain('value="請求書"');
    expect(page.html).toContain('Requests containing “請求書”');
  });

  /** %, _ and \ in a query are literal characters, not LIKE wildcards. */
  it('treats LIKE wildcards in the query literally', async () => {
    const { user, client } = await signedIn();
    const percent = await seedTicket(app.ctx.db, { requesterId: user.id, subject: 'Discount 100% off' });
    await seedTicket(app.ctx.db, { requesterId: user.id, subject: 'Discount 1000 off' });
    expect(await search(client, '100%')).toEqual([percent.ticket.id]);
    expect(await search(client, '10_0')).toEqual([]);
  });

  /**
   * Every search path gives the same scoped answer: a tab of at most WALK_LIMIT
   * requests is walked; a larger one is narrowed through the trigram index;
   * a term more common than SEARCH_CANDIDATE_CAP, or shorter than three
   * characters, falls back to the walk.
   */
  it('gives the same scoped answer on every path: walk, index narrowing, and a term too common to narrow', async () => {
    const { user, client } = await signedIn();
    const { client: staffClient } = await signedIn({ role: 'staff' });
    const other = await seedUser(app.ctx.db);
    const bulk = (requester: number, subject: string, n: number) =>
      app.ctx.db
        .insertInto('tickets')
        .columns(['subject', 'requester_id'])
        .expression(sql`SELECT ${subject} || ' ' || g, ${requester} FROM generate_series(1, ${n}) g`)
        .execute();
    await bulk(other.id, 'Popular widget', SEARCH_CANDIDATE_CAP + 5);
    const mine = await seedTicket(app.ctx.db, { requesterId: user.id, subject: 'My popular widget' });
    const kiwi = await seedTicket(app.ctx.db, { requesterId: user.id, subject: 'Order', messages: [{ text: 'A rare kiwi fruit' }] });
    await seedTicket(app.ctx.db, { requesterId: other.id, subject: 'Their kiwi' });
    // A small tab: walked.
    expect(await search(client, 'popular widget')).toEqual([mine.ticket.id]);
    expect(await search(client, 'kiwi')).toEqual([kiwi.ticket.id]);
    // A large tab: narrowed by the index, or walked when the term is too common or too short.
    await bulk(user.id, 'Bulk', WALK_LIMIT + 5);
    expect(await search(client, 'kiwi')).toEqual([kiwi.ticket.id]);
    expect(await search(client, 'popular widget')).toEqual([mine.ticket.id]);
    expect(await search(client, 'Popular')).toEqual([mine.ticket.id]);
    expect(await search(client, 'wi')).toEqual([mine.ticket.id, kiwi.ticket.id]);
    // Staff, every request: narrowed by the index.
    const staffKiwi = await search(staffClient, 'kiwi', '&filter=all');
    expect(staffKiwi).toHaveLength(2);
    expect(staffKiwi).toContain(kiwi.ticket.id);
  });

  /** Staff search the "All requests" tab; customers asking for it get nothing. */
  it('searches the staff-wide list for staff only, and keeps the search in the tab and page links', async () => {
    const { user } = await signedIn();
    const { client: staffClient } = await signedIn({ role: 'staff' });
    const t = await seedTicket(app.ctx.db, { requesterId: user.id, subject: '見積書の送付依頼' });
    expect(await search(staffClient, '見積書', '&filter=all')).toEqual([t.ticket.id]);
    const page = await staffClient.get(`/requests?filter=all&q=${encodeURIComponent('見積書')}`);
    expect(page.html).toContain('name="filter" value="all"');
  });

  /** Sort by last update (default) or by creation; the column shown follows the sort. */
  it('sorts by last update or by date submitted', async () => {
    const { user, client } = await signedIn();
    const older = await seedTicket(app.ctx.db, { requesterId: user.id, subject: 'Sortable A' });
    const newer = await seedTicket(app.ctx.db, { requesterId: user.id, subject: 'Sortable B' });
    await app.ctx.db
      .updateTable('tickets')
      .set({ created_at: sql`now() - interval '2 days'` as never, updated_at: sql`now()` as never })
      .where('id', '=', older.ticket.id)
      .execute();
    await app.ctx.db
      .updateTable('tickets')
      .set({ created_at: sql`now() - interval '1 day'` as never, updated_at: sql`now() - interval '1 hour'` as never })
      .where('id', '=', newer.ticket.id)
      .execute();
    const byUpdate = await client.get('/requests?q=Sortable');
    expect(rowIds(byUpdate.html)).toEqual([older.ticket.id, newer.ticket.id]);
    const byCreated = await client.get('/requests?q=Sortable&sort=created');
    expect(rowIds(byCreated.html)).toEqual([newer.ticket.id, older.ticket.id]);
    expect(byCreated.html).toContain('<option value="created" selected>');
    expect(byCreated.html).toContain('<th scope="col">Submitted</th>');
  });
});
