import { startApp, type RunningApp } from '../../src/app.js';
import { createTestDatabase, testConfig } from './env.js';

export interface TestApp extends RunningApp {
  databaseUrl: string;
  /** Stops the app and drops its database. */
  teardown(): Promise<void>;
}

/** A real replyline (own database, own queue prefix) on ephemeral ports. */
export async function startTestApp(overrides: Record<string, string> = {}): Promise<TestApp> {
  const database = await createTestDatabase();
  const app = await startApp(testConfig(database.url, overrides));
  return Object.assign(app, {
    databaseUrl: database.url,
    async teardown() {
      await app.stop();
      await database.drop();
    },
  });
}
