import { ConfigError, loadConfig, type Config } from './config.js';
import { runCli } from './cli/run.js';

let config: Config | ConfigError;
try {
  config = loadConfig();
} catch (err) {
  // `help` and `doctor` still work with a broken configuration; other commands report it.
  if (!(err instanceof ConfigError)) throw err;
  config = err;
}
try {
  const io = { out: (line: string) => process.stdout.write(`${line}\n`), err: (line: string) => process.stderr.write(`${line}\n`) };
  process.exitCode = await runCli(process.argv.slice(2), config, io, { databaseUrlFromEnv: Boolean(process.env.DATABASE_URL) });
} catch (err) {
  process.stderr.write(`error: ${String(err)}\n`);
  process.exitCode = 1;
}
