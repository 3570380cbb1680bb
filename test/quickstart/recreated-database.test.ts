import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startApp, type RunningApp } from '../../src/app.js';
import { createDb } from '../../src/db/database.js';
import { ensureInstallationId } from '../../src/db/queries/installation.js';
import { sendOnce } from '../inbound/support/smtp.js';
import { startRelaySink, to, type RelaySink } from '../outbound/support/relay-sink.js';
import { createTestDatabase, testConfig, testQueuePrefix } from '../support/env.js';

/**
 * Job ids live in Redis, which outlives databases. With ids derived from row
 * ids alone, a recreated database numbers its rows from 1 again, BullMQ
 * ignores add() for the ids its completed jobs still hold, and every message
 * waited for the sweeper (76–89 s per acknowledgement in the report). The
 * sweeper is switched off here (SWEEP_INTERVAL_MS = 10 min), so only a
 * prompt job can deliver the acknowledgement within the bound.
 */

const ACK_BOUND_MS = 10_000;

async function mailAndWaitForAck(app: RunningApp, sink: RelaySink, from: string): Promise<void> {
  const raw = `From: ${from}\r\nTo: support@help.test\r\nSubject: hello\r\nMessage-ID: <${from}>\r\n\r\nHello.\r\n`;
  expect(await sendOnce(app.smtp!.port, { from, to: ['support@help.test'] }, raw)).toMatch(/^250 /);
  await sink.waitFor(to(from), 1, ACK_BOUND_MS);
}

describe('a recreated database behind the same Redis prefix', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let sink: RelaySink;
  beforeAll(async () => {
    database = await createTestDatabase({ empty: true });
    sink = await startRelaySink();
  });
  afterAll(async () => {
    await sink?.stop();
    await database?.drop();
  });

  it('acknowledges promptly after the database is dropped and created again (the app creates it)', async () => {
    const settings = { QUEUE_PREFIX: testQueuePrefix(), OUTBOUND_SMTP_URL: sink.url, SWEEP_INTERVAL_MS: '600000' };
    const first = await startApp(testConfig(database.url, settings));
    try {
      await mailAndWaitForAck(first, sink, 'first@customer.test');
    } finally {
      await first.stop();
    }
    await database.drop();

    const second = await startApp(testConfig(database.url, settings));
    try {
      // Same row ids as before (inbound 1, outbound 1), same Redis prefix, a new installation id.
      expect(second.ctx.installationId).not.toBe(first.ctx.installationId);
      await mailAndWaitForAck(second, sink, 'second@customer.test');
    } finally {
      await second.stop();
    }
  });

  it('keeps the installation id across starts, and gives a copied database (a restored backup, a template clone) its own', async () => {
    const original = await createTestDatabase();
    const db = createDb(original.url, 1);
    let copyUrl = '';
    const admin = new pg.Client({ connectionString: inject('pgServerUrl') });
    try {
      const id = await ensureInstallationId(db);
      expect(id).toMatch(/^[0-9a-f]{12}$/);
      expect(await ensureInstallationId(db)).toBe(id);
      await db.destroy();

      const name = `${new URL(original.url).pathname.slice(1)}_copy`;
      await admin.connect();
      await admin.query(`CREATE DATABASE ${name} TEMPLATE ${new URL(original.url).pathname.slice(1)}`);
      copyUrl = original.url.replace(/\/[^/]+$/, `/${name}`);
      const copy = createDb(copyUrl, 1);
      try {
        const copied = await ensureInstallationId(copy);
        expect(copied).not.toBe(id);
        expect(await ensureInstallationId(copy)).toBe(copied);
      } finally {
        await copy.destroy();
      }
    } finally {
      if (copyUrl) await admin.query(`DROP DATABASE IF EXISTS ${new URL(copyUrl).pathname.slice(1)} WITH (FORCE)`);
      await admin.end().catch(() => {});
      await original.drop();
    }
  });
});
