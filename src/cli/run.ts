import type { Config } from '../config.js';
import { createDb } from '../db/database.js';
import { ensureDatabase, migrateToLatest } from '../db/migrate.js';
import { isAppError } from '../errors.js';
import { CliUsageError, type CliCommand, type CliIo } from './types.js';
import { heldCommands } from './held.js';
import { requeueCommands } from './requeue.js';
import { userCommands } from './users.js';

export const COMMANDS: CliCommand[] = [...userCommands, ...requeueCommands, ...heldCommands];

function usage(): string {
  return ['usage: npm run cli -- <command>', ...COMMANDS.map((c) => `  ${c.usage}`)].join('\n');
}

/** Runs one CLI invocation; returns the exit code. Errors become one line on `err`. */
export async function runCli(argv: string[], config: Config, io: CliIo & { err(line: string): void }): Promise<number> {
  const command = COMMANDS.filter((c) => c.words.every((w, i) => argv[i] === w)).sort((a, b) => b.words.length - a.words.length)[0];
  if (!command) {
    io.err(argv.length ? `unknown command: ${argv.join(' ')}\n${usage()}` : usage());
    return argv.length && !['help', '--help', '-h'].includes(argv[0]!) ? 2 : 0;
  }
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
    await command.run({ config, db, io }, argv.slice(command.words.length));
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
