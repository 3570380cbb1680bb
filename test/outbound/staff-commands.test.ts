import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findTicket } from '../../src/db/queries/tickets.js';
import { participantRole } from '../../src/db/queries/ticket-participants.js';
import { findUserByEmail } from '../../src/db/queries/users.js';
import { applyStaffCommands, parseStaffCommands } from '../../src/jobs/inbound/staff-commands.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { addCc, makeStaff, seedTicket, uid } from './support/fixtures.js';

describe('parseStaffCommands', () => {
  it('reads commands from the leading lines and removes them from the body', () => {
    const c = parseStaffCommands('#status solved\n#cc add New.Person@Example.com\n#cc remove <old@example.com>\n\nThanks, fixed!\nBye');
    expect(c).toEqual({
      status: 'solved',
      note: false,
      send: false,
      ccAdd: ['new.person@example.com'],
      ccRemove: ['old@example.com'],
      body: 'Thanks, fixed!\nBye',
    });
  });

  it('treats #note as an internal note and accepts blank lines and a colon between commands', () => {
    const c = parseStaffCommands('\n#note\n\n#STATUS: pending\nChecked the logs.');
    expect(c).toMatchObject({ status: 'pending', note: true, body: 'Checked the logs.' });
  });

  it('ignores commands after the first line of text: a #status further down is just text', () => {
    const c = parseStaffCommands('Hello,\n#status solved\nplease see above');
    expect(c).toEqual({ note: false, send: false, ccAdd: [], ccRemove: [], body: 'Hello,\n#status solved\nplease see above' });
  });

  it('consumes a mistyped command instead of publishing it, and ignores invalid addresses', () => {
    const c = parseStaffCommands('#status done\n#cc add not-an-address\nBody');
    expect(c).toEqual({ note: false, send: false, ccAdd: [], ccRemove: [], body: 'Body' });
    expect(parseStaffCommands('#1 priority for us').body).toBe('#1 priority for us');
  });

  it('handles CRLF line endings and several addresses on one #cc line', () => {
    const c = parseStaffCommands('#cc add a@example.com, b@example.com\r\n\r\nBody\r\n');
    expect(c.ccAdd).toEqual(['a@example.com', 'b@example.com']);
    expect(c.body).toBe('Body');
  });
});

describe('applyStaffCommands', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp({ REPLYLINE_ROLES: 'portal', MAX_CCS: '3' });
  });
  afterAll(() => app?.teardown());

  const apply = (ticketId: number, text: string) =>
    app.ctx.db.transaction().execute((trx) => applyStaffCommands(trx, app.ctx.config, ticketId, parseStaffCommands(text)));

  it('makes the first public replier the assignee, unless AUTO_ASSIGN_FIRST_REPLIER is off or the ticket has an owner', async () => {
    const staff = await makeStaff(app.ctx.db);
    const other = await makeStaff(app.ctx.db);
    const run = (ticketId: number, text: string, config = app.ctx.config, publicReply = true) =>
      app.ctx.db
        .transaction()
        .execute((trx) => applyStaffCommands(trx, config, ticketId, parseStaffCommands(text), { id: staff.id, publicReply }));
    const a = await seedTicket(app.ctx.db);
    await run(a.ticketId, '#note just looking', app.ctx.config, false);
    expect((await findTicket(app.ctx.db, a.ticketId))?.assignee_id).toBeNull();
    await run(a.ticketId, 'Hello!');
    expect((await findTicket(app.ctx.db, a.ticketId))?.assignee_id).toBe(staff.id);

    const b = await seedTicket(app.ctx.db);
    await run(b.ticketId, 'Hello!', { ...app.ctx.config, AUTO_ASSIGN_FIRST_REPLIER: false });
    expect((await findTicket(app.ctx.db, b.ticketId))?.assignee_id).toBeNull();

    const c = await seedTicket(app.ctx.db);
    await run(c.ticketId, `#assign ${other.email}\nHello!`);
    await run(c.ticketId, 'Me again.');
    expect((await findTicket(app.ctx.db, c.ticketId))?.assignee_id).toBe(other.id);
  });

  it('sets the status and adds/removes CCs, creating implicit accounts for new addresses', async () => {
    const t = await seedTicket(app.ctx.db);
    const old = await addCc(app.ctx.db, t.ticketId, `old-${uid()}@example.com`);
    const added = `new-${uid()}@example.com`;
    await apply(t.ticketId, `#status pending\n#cc add ${added}\n#cc remove ${old.email}\nbody`);
    expect((await findTicket(app.ctx.db, t.ticketId))?.status).toBe('pending');
    const user = await findUserByEmail(app.ctx.db, added);
    expect(user).toMatchObject({ role: 'customer', password_hash: null });
    expect(await participantRole(app.ctx.db, t.ticketId, user!.id)).toBe('cc');
    expect(await participantRole(app.ctx.db, t.ticketId, old.id)).toBeNull();
  });

  it('opens a new ticket when staff answer without #status, never removes the requester, never adds our own addresses', async () => {
    const t = await seedTicket(app.ctx.db);
    await apply(t.ticketId, `#cc remove ${t.customer.email}\n#cc add support@help.test\n#cc add support+abc@help.test\nHello`);
    expect((await findTicket(app.ctx.db, t.ticketId))?.status).toBe('open');
    expect(await participantRole(app.ctx.db, t.ticketId, t.customer.id)).toBe('requester');
    expect(await findUserByEmail(app.ctx.db, 'support@help.test')).toBeUndefined();
  });

  it('keeps a closed ticket closed and caps CCs at MAX_CCS', async () => {
    const t = await seedTicket(app.ctx.db);
    await app.ctx.db.updateTable('tickets').set({ status: 'closed' }).where('id', '=', t.ticketId).execute();
    const adds = Array.from({ length: 5 }, () => `#cc add cc-${uid()}@example.com`).join('\n');
    await apply(t.ticketId, `#status open\n${adds}\nx`);
    expect((await findTicket(app.ctx.db, t.ticketId))?.status).toBe('closed');
    const ccs = await app.ctx.db
      .selectFrom('ticket_participants')
      .select('user_id')
      .where('ticket_id', '=', t.ticketId)
      .where('role', '=', 'cc')
      .execute();
    expect(ccs).toHaveLength(3);
  });
});

describe('queue commands', () => {
  it('parses #assign, #unassign, #priority and #status on-hold, and consumes mistyped values', () => {
    expect(parseStaffCommands('#assign me\n#priority URGENT\n#status on-hold\nOn it.')).toMatchObject({
      assign: 'me',
      priority: 'urgent',
      status: 'hold',
      body: 'On it.',
    });
    expect(parseStaffCommands('#assign <Bob@Corp.test>\nx').assign).toBe('bob@corp.test');
    expect(parseStaffCommands('#unassign\nx').assign).toBeNull();
    const typo = parseStaffCommands('#priority highest\n#assign nobody\nBody');
    expect(typo).toMatchObject({ body: 'Body' });
    expect(typo.priority).toBeUndefined();
    expect(typo.assign).toBeUndefined();
  });

  it('parses #send (force a reply held as a collision) only in the leading block', () => {
    expect(parseStaffCommands('#send\n\n> quoted notice')).toMatchObject({ send: true, body: '> quoted notice' });
    expect(parseStaffCommands('#SEND\nSending anyway.')).toMatchObject({ send: true, body: 'Sending anyway.' });
    expect(parseStaffCommands('Please #send it\n#send').send).toBe(false);
  });
});
