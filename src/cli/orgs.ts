import {
  addOrganizationMember,
  createOrganization,
  findOrganization,
  listOrganizations,
  removeOrganizationMember,
  type Organization,
} from '../db/queries/organizations.js';
import { findUserByEmail } from '../db/queries/users.js';
import { AppError } from '../errors.js';
import { parseEmail } from '../core/address.js';
import { parseCliArgs } from './args.js';
import { CliUsageError, type CliCommand, type CliEnv } from './types.js';

const ADD_USAGE = 'org add <name> [--domain example.co.jp …] [--shared]';
const MEMBERS_ADD_USAGE = 'org members add <org> <email>';
const MEMBERS_REMOVE_USAGE = 'org members remove <org> <email>';

/** A bare domain as in an address after the @: letters, digits, hyphens and dots, lower-cased. */
const DOMAIN = /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;

function describe(o: Organization): string {
  return `${o.id}\t${o.name}\t${o.shared ? 'shared' : 'not shared'}\t${o.domains.join(',') || '-'}\t${o.members} member${o.members === 1 ? '' : 's'}`;
}

async function add(env: CliEnv, args: string[]): Promise<void> {
  const { values, positionals } = parseCliArgs(
    args,
    { domain: { type: 'string', multiple: true }, shared: { type: 'boolean' } },
    ADD_USAGE,
    true,
  );
  const name = positionals.join(' ').trim().replace(/\s+/g, ' ');
  if (!name) throw new CliUsageError(`usage: ${ADD_USAGE}`);
  const domains = [...new Set((values.domain ?? []).map((d) => d.trim().toLowerCase().replace(/^@/, '')))];
  for (const d of domains) {
    if (!DOMAIN.test(d)) throw new CliUsageError(`--domain must be a domain such as example.co.jp, got "${d}"; usage: ${ADD_USAGE}`);
  }
  const org = await createOrganization(env.db, { name, shared: values.shared ?? false, domains });
  env.io.out(`added organization ${describe(org)}`);
}

/** The organization and the (existing) account a members command names. */
async function memberArgs(env: CliEnv, args: string[], usage: string) {
  const { positionals } = parseCliArgs(args, {}, usage, true);
  if (positionals.length !== 2) throw new CliUsageError(`usage: ${usage}`);
  const email = parseEmail(positionals[1]!);
  const org = await findOrganization(env.db, positionals[0]!);
  if (!org) throw new AppError('NOT_FOUND', `no organization "${positionals[0]}" (see org list)`);
  const user = await findUserByEmail(env.db, email);
  if (!user) throw new AppError('NOT_FOUND', `no account with address ${email} (create it with user add)`);
  return { org, user };
}

export const orgCommands: CliCommand[] = [
  { words: ['org', 'add'], usage: ADD_USAGE, run: add },
  {
    words: ['org', 'members', 'add'],
    usage: MEMBERS_ADD_USAGE,
    async run(env, args) {
      const { org, user } = await memberArgs(env, args, MEMBERS_ADD_USAGE);
      const added = await addOrganizationMember(env.db, org.id, user.id);
      env.io.out(added ? `added ${user.email} to ${org.name}` : `${user.email} is already a member of ${org.name}`);
    },
  },
  {
    words: ['org', 'members', 'remove'],
    usage: MEMBERS_REMOVE_USAGE,
    async run(env, args) {
      const { org, user } = await memberArgs(env, args, MEMBERS_REMOVE_USAGE);
      const removed = await removeOrganizationMember(env.db, org.id, user.id);
      env.io.out(removed ? `removed ${user.email} from ${org.name}` : `${user.email} was not a member of ${org.name}`);
    },
  },
  {
    words: ['org', 'list'],
    usage: 'org list',
    async run(env, args) {
      const { positionals } = parseCliArgs(args, {}, 'org list', true);
      if (positionals.length) throw new CliUsageError('unexpected argument; usage: org list');
      const orgs = await listOrganizations(env.db);
      if (orgs.length === 0) env.io.out('no organizations');
      for (const o of orgs) env.io.out(describe(o));
    },
  },
];
