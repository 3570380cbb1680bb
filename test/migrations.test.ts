import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb, type Db } from '../src/db/database.js';
import { migrateToLatest } from '../src/db/migrate.js';
import { createUser } from '../src/db/queries/users.js';
import { migrations } from '../migrations/index.js';
import { createTestDatabase } from './support/env.js';

describe('migrations', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let dbs: Db[] = [];
  beforeAll(async () => {
    // A truly empty database, not the migrated template.
    database = await createTestDatabase({ empty: true });
  });
  afterAll(async () => {
    await Promise.all(dbs.map((d) => d.destroy()));
    await database.drop();
  });

  it('migrates an empty database once even when several processes start together', async () => {
    dbs = [1, 2, 3].map(() => createDb(database.url, 2));
    const results = await Promise.all(dbs.map((d) => migrateToLatest(d)));
    // Exactly one migrator applied every migration; the others found nothing to do.
    expect(results.flat().sort()).toEqual(Object.keys(migrations).sort());
    expect(results.filter((r) => r.length > 0)).toHaveLength(1);
  });

  it('creates every table operators query', async () => {
    const { rows } = await sql<{ table_name: string }>`
      select table_name from information_schema.tables where table_schema = 'public'`.execute(dbs[0]!);
    const tables = rows.map((r) => r.table_name);
    for (const t of [
      'users',
      'tickets',
      'ticket_participants',
      'messages',
      'attachments',
      'inbound_messages',
      'outbound_mails',
      'auth_tokens',
      'sessions',
    ]) {
      expect(tables).toContain(t);
    }
  });

  it('is a no-op when the schema is current', async () => {
    expect(await migrateToLatest(dbs[0]!)).toEqual([]);
  });

  it('keeps user addresses unique regardless of case', async () => {
    await createUser(dbs[0]!, { email: 'Mixed.Case@Example.com' });
    await expect(createUser(dbs[0]!, { email: 'mixed.case@EXAMPLE.com' })).rejects.toMatchObject({ code: 'DUPLICATE_USER' });
    // Even a raw insert that bypasses normalisation cannot create the duplicate.
    await expect(sql`insert into users (email) values ('MIXED.case@example.com')`.execute(dbs[0]!)).rejects.toThrow();
  });

  it('rejects statuses outside the documented sets', async () => {
    const user = await createUser(dbs[0]!, { email: 'status-check@example.com' });
    await expect(
      sql`insert into tickets (subject, status, requester_id) values ('x', 'bogus', ${user.id})`.execute(dbs[0]!),
    ).rejects.toThrow(/check constraint/);
  });
});
