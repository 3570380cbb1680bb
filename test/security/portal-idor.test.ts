import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, uniqueEmail } from '../portal/support.js';
import {
  makeUser,
  ofTicket,
  openTicket,
  PASSWORD,
  replyAddressOf,
  setPassword,
  settle,
  startRig,
  submit,
  ticketState,
  toAddress,
  TRUSTED_CUSTOMERS,
  type Rig,
} from './support/rig.js';
import { staffAddress, staffWorld } from './support/staff.js';

/**
 * IDOR through the portal: ids in URLs are sequential, so every read and
 * write must be scoped to the signed-in user. Built end to end: tickets,
 * CCs, attachments and a staff internal note (with its own attachment) all
 * arrive over real SMTP; a CC is removed by a real staff reply command.
 * Anything outside the viewer's scope must look exactly like "not found".
 */
const world = staffWorld();
let rig: Rig;
let alice: string;
let carol: Awaited<ReturnType<typeof openTicket>>;
let mallory: Awaited<ReturnType<typeof openTicket>>;
let dave: string;
let staffReplyTo: string;
const att = { carol: 0, mallory: 0, internal: 0 };

async function attachmentId(ticketId: number, filename: string): Promise<number> {
  const row = await rig.db
    .selectFrom('attachments as a')
    .innerJoin('messages as m', 'm.id', 'a.message_id')
    .select('a.id')
    .where('m.ticket_id', '=', ticketId)
    .where('a.filename', '=', filename)
    .executeTakeFirstOrThrow();
  return row.id;
}

async function signedIn(email: string): Promise<Client> {
  await setPassword(rig.db, email, PASSWORD);
  const client = new Client(rig.base);
  expect((await client.login(email, PASSWORD)).status).toBe(303);
  await client.get('/requests'); // a fresh CSRF token for the writes
  return client;
}

/** A staff reply from the staff member's own (DKIM-signing) mail server. */
async function staffSays(text: string, attachments?: Array<{ filename: string; content: string }>) {
  const row = await submit(
    rig,
    {
      from: { name: 'Alice Agent', address: alice },
      to: staffReplyTo,
      subject: `Re: ${carol.subject}`,
      text,
      attachments,
      dkim: world.staffDkim,
    },
    { to: [staffReplyTo] },
  );
  expect(row).toMatchObject({ status: 'processed', ticket_id: carol.ticketId });
}

beforeAll(async () => {
  rig = await startRig({}, { zone: { ...world.zone, ...TRUSTED_CUSTOMERS } });
  alice = (await makeUser(rig.db, { role: 'staff', name: 'Alice Agent', email: staffAddress('alice') })).email;
  dave = uniqueEmail('dave');
  carol = await openTicket(rig, {
    cc: [dave],
    staff: [alice],
    attachments: [{ filename: 'carol-invoice.txt', content: 'CAROL-PUBLIC-ATTACHMENT' }],
  });
  mallory = await openTicket(rig, { staff: [alice], attachments: [{ filename: 'mallory.txt', content: 'mallory' }] });
  staffReplyTo = await replyAddressOf(carol.notifications[alice]!);
  await staffSays('#note\nINTERNAL-NOTE-SECRET: customer is on the watch list', [
    { filename: 'internal-only.txt', content: 'INTERNAL-ATTACHMENT-SECRET' },
  ]);
  att.carol = await attachmentId(carol.ticketId, 'carol-invoice.txt');
  att.mallory = await attachmentId(mallory.ticketId, 'mallory.txt');
  att.internal = await attachmentId(carol.ticketId, 'internal-only.txt');
}, 60_000);
afterAll(() => rig?.teardown());

/** Every way in: the page, each attachment, and every write. */
async function expectNoAccess(client: Client, ticketId: number, attachmentIds: number[]) {
  expect((await client.get(`/requests/${ticketId}`)).status).toBe(404);
  for (const id of attachmentIds) expect((await client.get(`/requests/${ticketId}/attachments/${id}`)).status).toBe(404);
  const form = new FormData();
  form.set('body', 'IDOR-WRITE');
  expect((await client.postMultipart(`/requests/${ticketId}/comments`, form)).status).toBe(404);
  expect((await client.post(`/requests/${ticketId}/ccs`, { email: uniqueEmail('sneak') })).status).toBe(404);
  expect((await client.post(`/requests/${ticketId}/solve`, {})).status).toBe(404);
}

async function listed(client: Client): Promise<string> {
  const pages = await Promise.all(
    ['/requests', '/requests?filter=cc', '/requests?filter=all', '/requests?status=closed'].map((p) => client.get(p)),
  );
  return pages.map((p) => p.html).join('\n');
}

describe('IDOR on requests, messages and attachments', () => {
  it('control: the requester and the CC can read the request and download its public attachment', async () => {
    for (const email of [carol.email, dave]) {
      const client = await signedIn(email);
      expect((await client.get(`/requests/${carol.ticketId}`)).status).toBe(200);
      const file = await client.get(`/requests/${carol.ticketId}/attachments/${att.carol}`);
      expect(file.status).toBe(200);
      expect(file.html).toBe('CAROL-PUBLIC-ATTACHMENT');
    }
  });

  it('another customer gets 404 for the request, its attachment and every write — the same 404 as a request that does not exist — and nothing changes', async () => {
    const before = await ticketState(rig.db, carol.ticketId);
    const client = await signedIn(mallory.email);
    await expectNoAccess(client, carol.ticketId, [att.carol, att.internal]);
    // Her own ticket id does not open someone else's attachment either.
    expect((await client.get(`/requests/${mallory.ticketId}/attachments/${att.carol}`)).status).toBe(404);
    expect((await client.get(`/requests/${mallory.ticketId}/attachments/${att.mallory}`)).status).toBe(200);
    const foreign = await client.get(`/requests/${carol.ticketId}`);
    const missing = await client.get('/requests/999999999');
    const normal = (html: string) => html.replace(/\/requests\/\d+/g, '/requests/N');
    expect(missing.status).toBe(404);
    expect(normal(foreign.html)).toBe(normal(missing.html));
    expect(await listed(client)).not.toContain(carol.subject);
    expect(await ticketState(rig.db, carol.ticketId)).toEqual(before);
  });

  it('internal notes and their attachments stay hidden from the requester and the CC', async () => {
    for (const email of [carol.email, dave]) {
      const client = await signedIn(email);
      const page = await client.get(`/requests/${carol.ticketId}`);
      expect(page.status).toBe(200);
      expect(page.html).not.toContain('INTERNAL-NOTE-SECRET');
      expect(page.html).not.toContain('internal-only.txt');
      expect(page.html).not.toContain(`/attachments/${att.internal}`);
      const file = await client.get(`/requests/${carol.ticketId}/attachments/${att.internal}`);
      expect(file.status).toBe(404);
      expect(file.html).not.toContain('INTERNAL-ATTACHMENT-SECRET');
    }
  });

  it('a CC removed by staff (#cc remove) loses access at once, even in a session signed in before the removal, and by mail too', async () => {
    const client = await signedIn(dave);
    expect((await client.get(`/requests/${carol.ticketId}`)).status).toBe(200);
    // While still a CC, Dave gets a staff update carrying his own signed reply address.
    await staffSays('We have ordered a replacement part.');
    const [update] = await rig.sink.waitFor((m) => toAddress(dave)(m) && ofTicket(carol.ticketId)(m));
    const daveReplyTo = await replyAddressOf(update!);
    await staffSays(`#cc remove ${dave}`);
    const before = await ticketState(rig.db, carol.ticketId);
    expect(before.participants).toHaveLength(1);
    await client.get('/requests');
    await expectNoAccess(client, carol.ticketId, [att.carol]);
    expect(await listed(client)).not.toContain(carol.subject);
    // His old reply address is now a replayed token from a non-participant.
    const replay = await submit(
      rig,
      { from: dave, to: daveReplyTo, subject: 'Re: update', text: 'REMOVED-CC-REPLY' },
      { to: [daveReplyTo] },
    );
    expect(replay).toMatchObject({ status: 'held', reason: 'not_participant', ticket_id: carol.ticketId });
    await settle([rig]);
    expect(await ticketState(rig.db, carol.ticketId)).toEqual(before);
  });

  it('signed-out visitors are sent to sign in for the request and its attachment, and shown nothing of it', async () => {
    const client = new Client(rig.base);
    for (const path of [`/requests/${carol.ticketId}`, `/requests/${carol.ticketId}/attachments/${att.carol}`]) {
      const res = await client.get(path);
      expect(res.status).toBe(303);
      expect(res.location).toMatch(/\/login\?/);
      expect(res.html).not.toContain('CAROL-PUBLIC-ATTACHMENT');
      expect(res.html).not.toContain(carol.subject);
    }
  });
});
