import { ConfigError, loadConfig } from './config.js';
import { runCli } from './cli/run.js';

try {
  const config = loadConfig();
  const code = await runCli(process.argv.slice(2), config, {
    out: (line) => process.stdout.write(`${line}\n`),
    err: (line) => process.stderr.write(`${line}\n`),
  });
  process.exitCode = code;
} catch (err) {
  process.stderr.write(`error: ${err instanceof ConfigError ? err.message : String(err)}\n`);
  process.exitCode = 1;
}
