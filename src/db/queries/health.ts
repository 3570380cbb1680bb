import { sql } from 'kysely';
import type { Db } from '../database.js';

/** The cheapest round trip: /healthz asks only whether PostgreSQL answers. */
export async function pingDatabase(db: Db): Promise<void> {
  await sql`select 1`.execute(db);
}
