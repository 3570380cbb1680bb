import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/run.js';
import { insertInboundMessage } from '../../src/db/queries/inbound-messages.js';
import { processInboundMessage } from '../../src/jobs/inbound/batch.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { trustedSenderDns } from '../support/sender-dns.js';
import type { TestDnsServer } from '../outbound/support/dns-server.js';
import { cpuHeavyMail, deliver, uid } from './support/smtp.js';

let app: TestApp;
const db = () => app.ctx.db;

let dns: TestDnsServer;

beforeAll(async () => {
  // customer.example passes SPF from 127.0.0.1: its mail may add CCs.
  dns = await trustedSenderDns(['customer.example']);
  app = await startTestApp({ MAX_CCS: '1', DNS_SERVERS: dns.server });
});
afterAll(async () => {
  await app.teardown();
  await dns.stop();
});

async function cli(...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(argv, app.ctx.config, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

async function heldAutoReply(subject = `Out of office ${uid()}`) {
  return deliver(db(), app.smtp!.port, {
    from: `ooo-${uid()}@customer.example`,
    to: 'support@help.test',
    subject,
    text: 'I am away',
    headers: { 'Auto-Submitted': 'auto-replied' },
  });
}

describe('npm run cli -- held …', () => {
  it('held list shows held messages with reason, sender and subject, filterable by reason', async () => {
    const row = await heldAutoReply('Vacation notice');
    const all = await cli('held', 'list');
    expect(all.code).toBe(0);
    expect(all.out).toMatch(
      new RegExp(`^${row.id}\\t\\S+\\tauto_reply\\t${row.from_address}\\tVacation notice\\tAuto-Submitted: auto-replied$`, 'm'),
    );
    expect((await cli('held', 'list', '--reason', 'cc_limit')).out).not.toContain('Vacation notice');
    const bad = await cli('held', 'list', '--reason', 'nonsense');
    expect(bad.code).toBe(2);
  });

  it('held show prints the envelope, reason and the original headers', async () => {
    const row = await heldAutoReply();
    const r = await cli('held', 'show', String(row.id));
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^reason: +auto_reply \(machine-generated mail/m);
    expect(r.out).toMatch(/^envelope: +MAIL FROM:<ooo-/m);
    expect(r.out).toMatch(/^Auto-Submitted: auto-replied/m);
  });

  it('held release processes the message as if the rule had passed: the auto-reply becomes a ticket', async () => {
    const row = await heldAutoReply();
    const r = await cli('held', 'release', String(row.id));
    expect(r.code).toBe(0);
    expect(r.out).toMatch(new RegExp(`released ${row.id} from auto_reply; processed as ticket \\d+`));
    const after = await db().selectFrom('inbound_messages').selectAll().where('id', '=', row.id).executeTakeFirstOrThrow();
    expect(after.status).toBe('processed');
    expect(after.release_overrides).toEqual(['auto_reply']);
    expect(await db().selectFrom('messages').select('id').where('inbound_message_id', '=', row.id).execute()).toHaveLength(1);
  });

  it('held release waives only the rule that held it: a cc_limit release adds every CC', async () => {
    const cc = [`a-${uid()}@customer.example`, `b-${uid()}@customer.example`];
    const row = await deliver(db(), app.smtp!.port, {
      from: `ccs-${uid()}@customer.example`,
      to: 'support@help.test',
      cc,
      subject: 'ccs',
      text: 'x',
    });
    expect(row.reason).toBe('cc_limit');
    expect((await cli('held', 'release', String(row.id))).code).toBe(0);
    const after = await db()
      .selectFrom('inbound_messages')
      .select(['status', 'ticket_id'])
      .where('id', '=', row.id)
      .executeTakeFirstOrThrow();
    expect(after.status).toBe('processed');
    const ccs = await db()
      .selectFrom('ticket_participants')
      .select('user_id')
      .where('ticket_id', '=', after.ticket_id!)
      .where('role', '=', 'cc')
      .execute();
    expect(ccs).toHaveLength(2);
  });

  it('held release of a parse_failed message retries the parse with the long limit', async () => {
    const email = `pf-${uid()}@customer.example`;
    const id = await insertInboundMessage(db(), cpuHeavyMail(email), {
      mailFrom: email,
      rcptTo: ['support@help.test'],
      clientAddress: '127.0.0.1',
      helo: 'h',
      tls: false,
    });
    expect((await processInboundMessage({ ...app.ctx, config: { ...app.ctx.config, INBOUND_PARSE_TIMEOUT_MS: 20 } }, id)).reason).toBe(
      'parse_failed',
    );
    expect((await cli('held', 'release', String(id))).out).toMatch(/released \d+ from parse_failed; processed as ticket/);
  });

  it('held delete removes a held message; commands on messages that are not held fail with exit 1', async () => {
    const row = await heldAutoReply();
    expect((await cli('held', 'delete', String(row.id))).code).toBe(0);
    expect(await db().selectFrom('inbound_messages').select('id').where('id', '=', row.id).executeTakeFirst()).toBeUndefined();
    const missing = await cli('held', 'release', String(row.id));
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/no inbound message/);
    const usage = await cli('held', 'show', 'abc');
    expect(usage.code).toBe(2);
  });
});
