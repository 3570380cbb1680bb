import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '../portal/support.js';
import { openTicket, PASSWORD, setPassword, startRig, type Rig } from './support/rig.js';

/**
 * Finding 9 of issue #12: an upload is parsed in memory (several copies of a
 * form of up to ~60 MB), and nothing limited how many ran at once: four
 * concurrent uploads by one self-registered customer took the process from
 * 328 to 1014 MB RSS. Uploads now take a slot — one per user, four per
 * process — and a request over the limit is answered 429 before its body is
 * read. The customer's sequential uploads still work.
 */
let rig: Rig;
beforeAll(async () => {
  rig = await startRig({ ATTACHMENT_MAX_BYTES: String(20 * 1024 * 1024) });
});
afterAll(() => rig?.teardown());

const upload = (client: Client, ticketId: number, n: number, bytes: number) => {
  const form = new FormData();
  form.set('body', `upload ${n}`);
  form.append('files', new Blob([Buffer.alloc(bytes, 0x61 + n)]), `file-${n}.bin`);
  return client.postMultipart(`/requests/${ticketId}/comments`, form);
};

describe('concurrent uploads by one customer', () => {
  it('only one runs at a time; the others get 429 without being buffered; one after another all succeed', async () => {
    const t = await openTicket(rig);
    await setPassword(rig.db, t.email, PASSWORD);
    const client = new Client(rig.base);
    expect((await client.login(t.email, PASSWORD)).status).toBe(303);
    await client.get(`/requests/${t.ticketId}`);

    const rssBefore = process.memoryUsage().rss;
    const statuses = (await Promise.all([0, 1, 2, 3].map((n) => upload(client, t.ticketId, n, 15 * 1024 * 1024)))).map((r) => r.status);
    const rssAfter = process.memoryUsage().rss;
    console.log(
      `4 concurrent 15 MB uploads: statuses ${statuses.join(', ')}; RSS ${Math.round(rssBefore / 2 ** 20)} → ${Math.round(rssAfter / 2 ** 20)} MB`,
    );
    expect(statuses.filter((s) => s === 303).length).toBeGreaterThanOrEqual(1);
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(1);
    expect(statuses.every((s) => s === 303 || s === 429)).toBe(true);
    const stored = await rig.db
      .selectFrom('attachments as a')
      .innerJoin('messages as m', 'm.id', 'a.message_id')
      .select('a.id')
      .where('m.ticket_id', '=', t.ticketId)
      .execute();
    expect(stored).toHaveLength(statuses.filter((s) => s === 303).length);

    // Control: one after another, every upload is taken.
    await client.get(`/requests/${t.ticketId}`);
    expect((await upload(client, t.ticketId, 5, 1024)).status).toBe(303);
    await client.get(`/requests/${t.ticketId}`);
    expect((await upload(client, t.ticketId, 6, 1024)).status).toBe(303);
  });
});
