import { defineConfig } from 'vitest/config';

const shared = {
  globalSetup: ['test/global-setup.ts'],
  testTimeout: 30_000,
  hookTimeout: 60_000,
};

export default defineConfig({
  test: {
    // 2 cores: more forks only add contention with PostgreSQL and Redis.
    maxWorkers: 2,
    projects: [
      { test: { ...shared, name: 'unit', include: ['test/**/*.test.ts'], exclude: ['test/faults/**', 'test/security/**'] } },
      { test: { ...shared, name: 'faults', include: ['test/faults/**/*.test.ts'], testTimeout: 300_000 } },
      { test: { ...shared, name: 'security', include: ['test/security/**/*.test.ts'] } },
    ],
  },
});
