import type { Migration } from 'kysely';
import * as m0001 from './0001-initial.js';
import * as m0002 from './0002-inbound.js';
import * as m0005 from './0005-operations.js';
import * as m0004 from './0004-portal.js';
import * as m0006 from './0006-installation.js';
import * as m0007 from './0007-scrub-password-links.js';
import * as m0010 from './0010-lifecycle.js';
import * as m0011 from './0011-csat.js';
import * as m0012 from './0012-upload-quota.js';
import * as m0013 from './0013-portal-requests.js';
import * as m0014 from './0014-profile-orgs-search.js';

/**
 * The static migration list. Kysely's FileMigrationProvider imports files by
 * path at run time, which cannot load .ts under vitest on Node 20; a static
 * list also makes the set of migrations part of the type-checked build.
 * Append new migrations at the end; never rename or reorder.
 */
export const migrations: Record<string, Migration> = {
  '0001-initial': m0001,
  '0002-inbound': m0002,
  '0004-portal': m0004,
  '0005-operations': m0005,
  '0006-installation': m0006,
  '0007-scrub-password-links': m0007,
  '0010-lifecycle': m0010,
  '0011-csat': m0011,
  '0012-upload-quota': m0012,
  '0013-portal-requests': m0013,
  '0014-profile-orgs-search': m0014,
};
