/**
 * Job ids derived from database rows: re-enqueueing the same row (sweeper,
 * retries after a Redis outage) can never create a second live job for it.
 *
 * Row ids are only unique within one database, while jobs live in Redis,
 * which outlives databases: a recreated or restored database numbers its rows
 * from the start again, and BullMQ ignores add() for an id it still holds
 * (completed jobs are kept for an hour). So ids carry the installation id
 * (src/db/queries/installation.ts) too.
 */
export interface JobIdScope {
  installationId: string;
}

function scoped(scope: JobIdScope, kind: string, id: number): string {
  // An empty id would silently bring the collisions back; it means the context was never loaded.
  if (!scope.installationId) throw new Error('installation id not loaded: call loadInstallation(ctx) after migrating');
  return `${kind}-${scope.installationId}-${id}`;
}

export const inboundJobId = (scope: JobIdScope, inboundId: number) => scoped(scope, 'inbound', inboundId);
export const outboundJobId = (scope: JobIdScope, outboundId: number) => scoped(scope, 'outbound', outboundId);
