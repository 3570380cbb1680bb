import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp } from '../src/app.js';
import { startTestApp, type TestApp } from './support/app.js';
import { createTestDatabase, testConfig } from './support/env.js';

describe('GET /healthz', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp({ REPLYLINE_ROLES: 'portal' });
  });
  afterAll(() => app.teardown());

  it('answers 200 when PostgreSQL and Redis are reachable', async () => {
    const res = await fetch(`http://127.0.0.1:${app.portal!.port}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok', postgres: 'ok', redis: 'ok' });
  });

  it('answers 503 naming Redis when Redis is unreachable', async () => {
    const database = await createTestDatabase();
    // Port 1 on loopback refuses connections: a Redis that is down.
    const down = await startApp(testConfig(database.url, { REPLYLINE_ROLES: 'portal', REDIS_URL: 'redis://127.0.0.1:1' }));
    try {
      const res = await fetch(`http://127.0.0.1:${down.portal!.port}/healthz`);
      expect(res.status).toBe(503);
      const body = (await res.json()) as { postgres: string; redis: string };
      expect(body.postgres).toBe('ok');
      expect(body.redis).toMatch(/^down/);
    } finally {
      await down.stop();
      await database.drop();
    }
  });
});
