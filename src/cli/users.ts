import { migrateToLatest } from '../db/migrate.js';
import { createUser, findUserByEmail, listUsers, setUserRole } from '../db/queries/users.js';
import type { UserRole } from '../db/database.js';
import { parseEmail } from '../core/address.js';
import { parseCliArgs } from './args.js';
import { CliUsageError, type CliCommand, type CliEnv } from './types.js';

function oneEmail(args: string[], usage: string): { email: string; name: string | null } {
  const { values, positionals } = parseCliArgs(args, { name: { type: 'string' } }, usage, true);
  if (positionals.length !== 1) throw new CliUsageError(`usage: ${usage}`);
  return { email: parseEmail(positionals[0]!), name: values.name?.trim() || null };
}

async function addUser(env: CliEnv, args: string[], role: UserRole, usage: string): Promise<void> {
  const { email, name } = oneEmail(args, usage);
  const existing = await findUserByEmail(env.db, email);
  // Promoting an implicit customer account to staff is the common case: a
  // colleague who once wrote in as a customer now joins support.
  if (existing && role === 'staff' && existing.role === 'customer') {
    await setUserRole(env.db, existing.id, 'staff');
    env.io.out(`promoted ${existing.email} (id ${existing.id}) to staff`);
    return;
  }
  const user = await createUser(env.db, { email, name, role });
  env.io.out(`added ${role} ${user.email} (id ${user.id})`);
}

async function list(env: CliEnv, role: UserRole): Promise<void> {
  const users = await listUsers(env.db, role);
  if (users.length === 0) env.io.out(`no ${role} accounts`);
  for (const u of users) {
    const state = u.password_hash ? 'password set' : 'no password';
    env.io.out(`${u.id}\t${u.email}\t${u.name ?? ''}\t${state}\t${u.created_at.toISOString()}`);
  }
}

export const userCommands: CliCommand[] = [
  {
    words: ['migrate'],
    usage: 'migrate',
    async run(env) {
      const applied = await migrateToLatest(env.db);
      env.io.out(applied.length ? `applied: ${applied.join(', ')}` : 'schema is up to date');
    },
  },
  {
    words: ['staff', 'add'],
    usage: 'staff add <email> [--name NAME]',
    run: (env, args) => addUser(env, args, 'staff', 'staff add <email> [--name NAME]'),
  },
  { words: ['staff', 'list'], usage: 'staff list', run: (env) => list(env, 'staff') },
  {
    words: ['user', 'add'],
    usage: 'user add <email> [--name NAME]',
    run: (env, args) => addUser(env, args, 'customer', 'user add <email> [--name NAME]'),
  },
  { words: ['user', 'list'], usage: 'user list', run: (env) => list(env, 'customer') },
];
