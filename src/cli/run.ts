import { ConfigError, type Config } from '../config.js';
import { createDb } from '../db/database.js';
import { ensureDatabase, migrateToLatest } from '../db/migrate.js';
import { isAppError } from '../errors.js';
import { CliUsageError, type CliCommand, type CliIo } from './types.js';
import { doctorCommands } from './doctor.js';
import { heldCommands } from './held.js';
import { orgCommands } from './orgs.js';
import { requeueCommands } from './requeue.js';
import { userCommands } from './users.js';

export const COMMANDS: CliCommand[] = [...userCommands, ...orgCommands, ...requeueCommands, ...heldCommands, ...doctorCommands];

const HELP = ['help', '--help', '-h'];

function usage(): string {
  return [
    'usage: npm run cli -- <command>   (in the Docker image: node dist/src/cli.js <command>)',
    ...COMMANDS.map((c) => `  ${c.usage}`),
  ].join('\n');
}

/** "replyline on 127.0.0.1:5432": which database a command works on, without the password. */
export function describeDatabase(databaseUrl: string): string {
  const url = new URL(databaseUrl);
  return `${decodeURIComponent(url.pathname.slice(1)) || '(default)'} on ${url.host}`;
}

export interface CliOptions {
  /** False when DATABASE_URL was not set and the built-in default is used: said on stderr, as it surprised users. */
  databaseUrlFromEnv?: boolean;
}

/** Runs one CLI invocation; returns the exit code. Errors become one line on `err`. */
export async function runCli(
  argv: string[],
  config: Config | ConfigError,
  io: CliIo & { err(line: string): void },
  opts: CliOptions = {},
): Promise<number> {
  if (argv.length === 0 || HELP.includes(argv[0]!)) {
    io.out(usage());
    return 0;
  }
  const command = COMMANDS.filter((c) => c.words.every((w, i) => argv[i] === w)).sort((a, b) => b.words.length - a.words.length)[0];
  if (!command) {
    io.err(`error: unknown command "${argv.join(' ')}"; run "npm run cli -- help" for the list of commands`);
    return 2;
  }
  const args = argv.slice(command.words.length);
  if (args.some((a) => HELP.includes(a))) {
    io.out(`usage: ${command.usage}`);
    return 0;
  }
  // doctor reports an invalid configuration as one of its checks.
  if (config instanceof ConfigError) {
    if (command.standalone) return runStandalone(command, config, io, args);
    io.err(`error: ${config.message}`);
    return 1;
  }
  // Always say which database: running without the variables exported silently used the default one.
  const fallback = opts.databaseUrlFromEnv === false ? ' (the default; set DATABASE_URL to use another)' : '';
  io.err(`database: ${describeDatabase(config.DATABASE_URL)}${fallback}`);
  if (command.standalone) return runStandalone(command, config, io, args);
  try {
    await ensureDatabase(config.DATABASE_URL);
  } catch (err) {
    io.err(`error: cannot reach PostgreSQL at ${new URL(config.DATABASE_URL).host}: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
  const db = createDb(config.DATABASE_URL, 2);
  try {
    // Every command but migrate itself works on the current schema.
    if (command.words[0] !== 'migrate') await migrateToLatest(db);
    await command.run({ config, db, io }, args);
    return 0;
  } catch (err) {
    if (err instanceof CliUsageError || isAppError(err)) {
      io.err(`error: ${err.message}`);
      return isAppError(err) ? 1 : 2;
    }
    io.err(`error: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  } finally {
    await db.destroy();
  }
}

async function runStandalone(
  command: CliCommand,
  config: Config | ConfigError,
  io: CliIo & { err(line: string): void },
  args: string[],
): Promise<number> {
  try {
    return await command.standalone!(config, io, args);
  } catch (err) {
    io.err(`error: ${err instanceof Error ? err.message : String(err)}`);
    return err instanceof CliUsageError ? 2 : 1;
  }
}
