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
      // Each fault file drives a whole replyline process under load: one at a time.
      { test: { ...shared, name: 'faults', include: ['test/faults/**/*.test.ts'], testTimeout: 300_000, fileParallelism: false } },
      { test: { ...shared, name: 'security', include: ['test/security/**/*.test.ts'] } },
    ],
  },
});
