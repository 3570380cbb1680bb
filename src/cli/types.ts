import type { Config } from '../config.js';
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
}

/** An error whose message is the one line the CLI prints before exiting 1. */
export class CliUsageError extends Error {}
