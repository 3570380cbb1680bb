import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import type { Db } from '../database.js';

/**
 * This installation's id, created on first start. A row written in another
 * database (a restored backup, a copy made with CREATE DATABASE … TEMPLATE)
 * carries that database's OID and is replaced: job ids must change whenever
 * row ids may start again from numbers an earlier database already used.
 * One statement, so processes starting together agree on a single id.
 */
export async function ensureInstallationId(db: Db): Promise<string> {
  const fresh = randomBytes(6).toString('hex');
  const { rows } = await sql<{ id: string }>`
    WITH here AS (SELECT oid FROM pg_database WHERE datname = current_database())
    INSERT INTO installation (singleton, id, database_oid)
    SELECT true, ${fresh}, here.oid FROM here
    ON CONFLICT (singleton) DO UPDATE SET id = EXCLUDED.id, database_oid = EXCLUDED.database_oid, created_at = now()
      WHERE installation.database_oid <> EXCLUDED.database_oid
    RETURNING id`.execute(db);
  if (rows[0]) return rows[0].id;
  const row = await db.selectFrom('installation').select('id').executeTakeFirstOrThrow();
  return row.id;
}
