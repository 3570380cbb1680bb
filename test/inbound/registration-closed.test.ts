import { afterAll, beforeAll, expect, it } from 'vitest';
import { createUser } from '../../src/db/queries/users.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { deliver, uid } from './support/smtp.js';

let app: TestApp;
beforeAll(async () => {
  app = await startTestApp({ REGISTRATION: 'closed' });
});
afterAll(() => app.teardown());

it('with REGISTRATION=closed, mail from an unknown sender is held (unknown_sender): no account, no ticket, no mail', async () => {
  const email = `unknown-${uid()}@customer.example`;
  const row = await deliver(app.ctx.db, app.smtp!.port, { from: email, to: 'support@help.test', subject: 'hello', text: 'hi' });
  expect(row).toMatchObject({ status: 'held', reason: 'unknown_sender', ticket_id: null });
  expect(await app.ctx.db.selectFrom('users').select('id').where('email', '=', email).executeTakeFirst()).toBeUndefined();
  expect(await app.ctx.db.selectFrom('outbound_mails').select('id').where('recipient', '=', email).executeTakeFirst()).toBeUndefined();
});

it('with REGISTRATION=closed, a known sender still gets a ticket', async () => {
  const email = `known-${uid()}@customer.example`;
  await createUser(app.ctx.db, { email });
  const row = await deliver(app.ctx.db, app.smtp!.port, { from: email, to: 'support@help.test', subject: 'hello', text: 'hi' });
  expect(row.status).toBe('processed');
  expect(row.ticket_id).not.toBeNull();
});
