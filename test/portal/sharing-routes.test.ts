import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addOrganizationMember, createOrganization } from '../../src/db/queries/organizations.js';
import { Client, GOOD_PASSWORD, seedTicket, seedUser, startPortalApp, uniqueEmail, type PortalTestApp } from './support.js';

let app: PortalTestApp;
beforeAll(async () => {
  app = await startPortalApp({ RATE_LOGIN_PER_IP: '1000', MAX_CCS: '5' });
});
afterAll(() => app.teardown());

async function signedIn(opts: Parameters<typeof seedUser>[1] = {}) {
  const user = await seedUser(app.ctx.db, opts);
  const client = new Client(app.base);
  expect((await client.login(user.email, GOOD_PASSWORD)).status).toBe(303);
  return { user, client };
}

const rowIds = (html: string) => [...html.matchAll(/<td data-label="Number">#(\d+)<\/td>/g)].map((m) => Number(m[1])).sort((a, b) => a - b);
const ccsOf = async (ticketId: number) =>
  (
    await app.ctx.db
      .selectFrom('ticket_participants')
      .select('user_id')
      .where('ticket_id', '=', ticketId)
      .where('role', '=', 'cc')
      .execute()
  ).map((r) => r.user_id);

describe('CCs: remove, and re-adding one', () => {
  /** The requester removes a CC (CSRF-checked); the requester cannot be removed; a second removal says it is gone. */
  it('lets the requester remove a CC, never the requester, with CSRF', async () => {
    const { user, client } = await signedIn();
    const cc = await seedUser(app.ctx.db);
    const { ticket } = await seedTicket(app.ctx.db, { requesterId: user.id, ccIds: [cc.id] });
    const page = await client.get(`/requests/${ticket.id}`);
    expect(page.html).toContain(`action="${app.base}/requests/${ticket.id}/ccs/remove"`);
    expect(page.html).toContain(`aria-label="Remove ${cc.email} from CC"`);

    expect((await client.post(`/requests/${ticket.id}/ccs/remove`, { user_id: String(cc.id) }, { csrf: 'forged' })).status).toBe(403);
    expect(await ccsOf(ticket.id)).toEqual([cc.id]);
    const requesterGone = await client.post(`/requests/${ticket.id}/ccs/remove`, { user_id: String(user.id) });
    expect(requesterGone.status).toBe(422);
    expect(requesterGone.html).toContain('That person is not copied on this request (any more).');

    const res = await client.post(`/requests/${ticket.id}/ccs/remove`, { user_id: String(cc.id) });
    expect(res.status).toBe(303);
    expect(res.location).toBe(`${app.base}/requests/${ticket.id}?notice=cc_removed`);
    expect(await ccsOf(ticket.id)).toEqual([]);
    expect((await client.get(`/requests/${ticket.id}?notice=cc_removed`)).html).toContain('The CC was removed.');
    expect((await client.post(`/requests/${ticket.id}/ccs/remove`, { user_id: String(cc.id) })).status).toBe(422);
  });

  /** A CC removes another CC or themselves (then loses access); strangers get 404 and remove nothing; closed requests refuse (409). */
  it('lets a CC remove a CC or themselves; strangers get 404, closed requests 409', async () => {
    const { user: requester } = await signedIn();
    const { user: ccA, client: clientA } = await signedIn();
    const ccB = await seedUser(app.ctx.db);
    const { ticket } = await seedTicket(app.ctx.db, { requesterId: requester.id, ccIds: [ccA.id, ccB.id] });
    const { client: stranger } = await signedIn();
    await stranger.get('/requests');
    expect((await stranger.post(`/requests/${ticket.id}/ccs/remove`, { user_id: String(ccB.id) })).status).toBe(404);
    expect(await ccsOf(ticket.id)).toEqual([ccA.id, ccB.id]);

    await clientA.get(`/requests/${ticket.id}`);
    expect((await clientA.post(`/requests/${ticket.id}/ccs/remove`, { user_id: String(ccB.id) })).status).toBe(303);
    const self = await clientA.post(`/requests/${ticket.id}/ccs/remove`, { user_id: String(ccA.id) });
    expect(self.location).toBe(`${app.base}/requests`);
    expect((await clientA.get(`/requests/${ticket.id}`)).status).toBe(404);

    const ccC = await seedUser(app.ctx.db);
    const { user: owner, client: ownerClient } = await signedIn();
    const closed = await seedTicket(app.ctx.db, { requesterId: owner.id, ccIds: [ccC.id], status: 'closed' });
    await ownerClient.get(`/requests/${closed.ticket.id}`);
    expect((await ownerClient.post(`/requests/${closed.ticket.id}/ccs/remove`, { user_id: String(ccC.id) })).status).toBe(409);
    expect(await ccsOf(closed.ticket.id)).toEqual([ccC.id]);
  });

  /** Adding an address that is already on the request (as CC or requester) says so, in English and Japanese, and adds nothing. */
  it('says so when the address is already on the request', async () => {
    const { user, client } = await signedIn();
    const email = uniqueEmail('colleague');
    const { ticket } = await seedTicket(app.ctx.db, { requesterId: user.id });
    await client.get(`/requests/${ticket.id}`);
    expect((await client.post(`/requests/${ticket.id}/ccs`, { email })).status).toBe(303);
    const again = await client.post(`/requests/${ticket.id}/ccs`, { email: email.toUpperCase() });
    expect(again.status).toBe(422);
    expect(again.html).toContain('That address is already on this request.');
    const self = await client.post(`/requests/${ticket.id}/ccs`, { email: user.email });
    expect(self.html).toContain('That address is already on this request.');
    expect(await ccsOf(ticket.id)).toHaveLength(1);
    await client.post('/locale', { locale: 'ja', return_to: `/requests/${ticket.id}` });
    await client.get(`/requests/${ticket.id}`);
    expect((await client.post(`/requests/${ticket.id}/ccs`, { email })).html).toContain(
      'そのメールアドレスはすでにこのリクエストに含まれています。',
    );
  });
});

describe('organization requests', () => {
  async function org(shared: boolean) {
    const o = await createOrganization(app.ctx.db, { name: `Org ${uniqueEmail('o')}`, shared, domains: [] });
    const a = await signedIn();
    const b = await signedIn();
    for (const m of [a, b]) await addOrganizationMember(app.ctx.db, o.id, m.user.id);
    return { a, b };
  }

  /**
   * A member of a shared organization gets the "Organization requests" tab
   * listing every request of the members, and can open them read-only: no
   * reply, CC or solve forms, and those POSTs are refused (403) and change nothing.
   */
  it('shows a shared organization tab and opens peers’ requests read-only', async () => {
    const { a, b } = await org(true);
    const outsider = await seedUser(app.ctx.db);
    const bTicket = await seedTicket(app.ctx.db, { requesterId: b.user.id, subject: '請求書の件 (B)' });
    const aTicket = await seedTicket(app.ctx.db, { requesterId: a.user.id, subject: 'A own' });
    await seedTicket(app.ctx.db, { requesterId: outsider.id, subject: 'Outsider' });

    const mine = await a.client.get('/requests');
    expect(mine.html).toContain(`href="${app.base}/requests?filter&#x3D;org">Organization requests</a>`);
    expect(rowIds((await a.client.get('/requests?filter=org')).html)).toEqual([bTicket.ticket.id, aTicket.ticket.id].sort((x, y) => x - y));
    // Search is scoped to the tab too.
    expect(rowIds((await a.client.get(`/requests?filter=org&q=${encodeURIComponent('請求書')}`)).html)).toEqual([bTicket.ticket.id]);

    const page = await a.client.get(`/requests/${bTicket.ticket.id}`);
    expect(page.status).toBe(200);
    expect(page.html).toContain('You can read this request because its requester belongs to your organization.');
    expect(page.html).not.toContain('/comments"');
    expect(page.html).not.toContain('/ccs"');
    expect(page.html).not.toContain('/ccs/remove"');
    expect(page.html).not.toContain('/solve"');
    expect((await a.client.post(`/requests/${bTicket.ticket.id}/solve`, {})).status).toBe(403);
    expect((await a.client.post(`/requests/${bTicket.ticket.id}/ccs`, { email: uniqueEmail('x') })).status).toBe(403);
    const form = new FormData();
    form.set('body', 'peer reply');
    expect((await a.client.postMultipart(`/requests/${bTicket.ticket.id}/comments`, form)).status).toBe(403);
    const after = await app.ctx.db.selectFrom('tickets').select('status').where('id', '=', bTicket.ticket.id).executeTakeFirstOrThrow();
    expect(after.status).toBe('new');
    expect(await ccsOf(bTicket.ticket.id)).toEqual([]);

    // Once copied in, the member participates and gets the forms.
    await app.ctx.db.insertInto('ticket_participants').values({ ticket_id: bTicket.ticket.id, user_id: a.user.id, role: 'cc' }).execute();
    expect((await a.client.get(`/requests/${bTicket.ticket.id}`)).html).toContain('/comments"');
  });

  /** A non-shared organization adds nothing: no tab, ?filter=org falls back to "My requests", and peers' requests are 404. */
  it('shows nothing extra for a non-shared organization, and 404 for a peer’s request', async () => {
    const { a, b } = await org(false);
    const bTicket = await seedTicket(app.ctx.db, { requesterId: b.user.id, subject: 'Private to B' });
    const aTicket = await seedTicket(app.ctx.db, { requesterId: a.user.id, subject: 'A own' });
    const page = await a.client.get('/requests?filter=org');
    expect(page.html).not.toContain('Organization requests');
    expect(rowIds(page.html)).toEqual([aTicket.ticket.id]);
    expect((await a.client.get(`/requests/${bTicket.ticket.id}`)).status).toBe(404);
  });

  /** A non-member gets 404 for a shared organization member's request, and an empty org tab. */
  it('keeps shared organizations closed to non-members', async () => {
    const { b } = await org(true);
    const bTicket = await seedTicket(app.ctx.db, { requesterId: b.user.id, subject: 'Members only' });
    const { client } = await signedIn();
    expect((await client.get(`/requests/${bTicket.ticket.id}`)).status).toBe(404);
    const tab = await client.get('/requests?filter=org');
    expect(tab.html).not.toContain('Members only');
    expect(tab.html).not.toContain('Organization requests');
  });
});
