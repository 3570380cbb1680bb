import { sql } from 'kysely';
import type { Db } from '../database.js';
import { AppError } from '../../errors.js';

/**
 * Organizations (migration 0014): companies whose contacts support knows.
 * New accounts join by their address's domain (a trigger on users); members
 * of a shared organization read each other's requests in the portal.
 */
export interface Organization {
  id: number;
  name: string;
  shared: boolean;
  domains: string[];
  members: number;
}

/** Creates an organization with its domains; a taken name or domain is a VALIDATION error naming the clash. */
export async function createOrganization(db: Db, org: { name: string; shared: boolean; domains: string[] }): Promise<Organization> {
  return db.transaction().execute(async (trx) => {
    const taken = await trx
      .selectFrom('organization_domains as d')
      .innerJoin('organizations as o', 'o.id', 'd.organization_id')
      .select(['d.domain', 'o.name'])
      .where('d.domain', 'in', org.domains.length ? org.domains : [''])
      .executeTakeFirst();
    if (taken) throw new AppError('VALIDATION', `domain ${taken.domain} already belongs to organization "${taken.name}"`);
    const row = await trx
      .insertInto('organizations')
      .values({ name: org.name, shared: org.shared })
      .onConflict((oc) => oc.expression(sql`lower(name)`).doNothing())
      .returningAll()
      .executeTakeFirst();
    if (!row) throw new AppError('VALIDATION', `an organization named "${org.name}" already exists`);
    if (org.domains.length) {
      await trx
        .insertInto('organization_domains')
        .values(org.domains.map((domain) => ({ domain, organization_id: row.id })))
        .execute();
    }
    return { id: row.id, name: row.name, shared: row.shared, domains: org.domains, members: 0 };
  });
}

/** By id ("12") or by name, case-insensitively. */
export async function findOrganization(db: Db, ref: string): Promise<Organization | undefined> {
  const all = await listOrganizations(db, /^\d{1,15}$/.test(ref) ? { id: Number(ref) } : { name: ref });
  return all[0];
}

export async function listOrganizations(db: Db, where: { id?: number; name?: string } = {}): Promise<Organization[]> {
  let q = db
    .selectFrom('organizations as o')
    .select([
      'o.id',
      'o.name',
      'o.shared',
      sql<
        string[]
      >`coalesce((SELECT array_agg(d.domain ORDER BY d.domain) FROM organization_domains d WHERE d.organization_id = o.id), '{}')`.as(
        'domains',
      ),
      sql<number>`(SELECT count(*)::int FROM organization_members m WHERE m.organization_id = o.id)`.as('members'),
    ])
    .orderBy('o.id');
  if (where.id !== undefined) q = q.where('o.id', '=', where.id);
  if (where.name !== undefined) q = q.where(sql<string>`lower(o.name)`, '=', where.name.toLowerCase());
  return q.execute();
}

/** Adds a member; false when they already were one. */
export async function addOrganizationMember(db: Db, organizationId: number, userId: number): Promise<boolean> {
  const res = await db
    .insertInto('organization_members')
    .values({ organization_id: organizationId, user_id: userId })
    .onConflict((oc) => oc.columns(['organization_id', 'user_id']).doNothing())
    .executeTakeFirst();
  return Number(res.numInsertedOrUpdatedRows ?? 0) > 0;
}

/** Removes a member; false when they were not one. */
export async function removeOrganizationMember(db: Db, organizationId: number, userId: number): Promise<boolean> {
  const res = await db
    .deleteFrom('organization_members')
    .where('organization_id', '=', organizationId)
    .where('user_id', '=', userId)
    .executeTakeFirst();
  return Number(res.numDeletedRows) > 0;
}
