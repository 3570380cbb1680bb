/**
 * The direction of dependencies between src/ folders, checked in `npm test`
 * (test/architecture.test.ts). Higher layers may use lower ones, never the
 * reverse, so no two folders depend on each other:
 *
 *   portal ─┐
 *   cli ────┼─▶ auth ─▶ jobs ─▶ mail ─▶ db ─▶ core
 *   inbound ┘        (inbound ─▶ jobs)
 *
 * The root files (config, errors, log, context, app, main) are the frame:
 * context.ts builds what every layer is handed, so layers import its types.
 */
const layers = {
  core: ['db', 'mail', 'jobs', 'auth', 'inbound', 'portal', 'cli'],
  db: ['mail', 'jobs', 'auth', 'inbound', 'portal', 'cli'],
  mail: ['jobs', 'auth', 'inbound', 'portal', 'cli'],
  jobs: ['auth', 'inbound', 'portal', 'cli'],
  auth: ['inbound', 'portal', 'cli'],
  inbound: ['auth', 'portal', 'cli'],
  portal: ['inbound', 'cli'],
};

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'A module cycle (type-only imports aside, which vanish at run time).',
      from: { path: '^src/' },
      to: { circular: true, dependencyTypesNot: ['type-only'], viaOnly: { dependencyTypesNot: ['type-only'] } },
    },
    ...Object.entries(layers).map(([from, above]) => ({
      name: `layer-${from}`,
      severity: 'error',
      comment: `src/${from} may not depend on the layers above it (${above.join(', ')}).`,
      from: { path: `^src/${from}/` },
      to: { path: `^src/(${above.join('|')})/` },
    })),
    {
      name: 'no-test-code-in-src',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(test|bench)/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsConfig: { fileName: 'tsconfig.json' },
    tsPreCompilationDeps: true,
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default', 'types'] },
  },
};
