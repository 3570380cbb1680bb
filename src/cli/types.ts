import type { Config, ConfigError } from '../config.js';
import type { Db } from '../db/database.js';

export interface CliIo {
  out(line: string): void;
}

export interface CliEnv {
  config: Config;
  db: Db;
  io: CliIo;
}

/** A CLI command: `words` is the path (e.g. ["staff", "add"]), `run` gets the remaining args. */
export interface CliCommand {
  words: string[];
  usage: string;
  run(env: CliEnv, args: string[]): Promise<void>;
  /**
   * Runs without the usual preparation (creating the database, migrating it) and
   * returns its own exit code: `doctor` must report on the installation as it is.
   */
  standalone?: (config: Config | ConfigError, io: CliIo & { err(line: string): void }, args: string[]) => Promise<number>;
}

/** An error whose message is the one line the CLI prints before exiting 1. */
export class CliUsageError extends Error {}
