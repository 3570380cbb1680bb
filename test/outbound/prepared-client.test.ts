import { inject, describe, expect, it } from 'vitest';
import { PreparingClient, preparedName } from '../../src/db/prepared-client.js';

describe('PreparingClient', () => {
  it('runs marked SQL as a named prepared statement and leaves other SQL alone', async () => {
    const client = new PreparingClient({ connectionString: inject('pgServerUrl') });
    await client.connect();
    try {
      const marked = `${preparedName('rl_test_stmt')} SELECT $1::int + 1 AS n`;
      expect((await client.query(marked, [41])).rows[0].n).toBe(42);
      expect((await client.query(marked, [1])).rows[0].n).toBe(2);
      await client.query('SELECT 1 AS plain');
      const { rows } = await client.query<{ name: string }>('SELECT name FROM pg_prepared_statements ORDER BY name');
      expect(rows.map((r) => r.name)).toEqual(['rl_test_stmt']);
    } finally {
      await client.end();
    }
  });
});
