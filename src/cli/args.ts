import { parseArgs, type ParseArgsConfig } from 'node:util';
import { CliUsageError } from './types.js';

type Options = NonNullable<ParseArgsConfig['options']>;

/**
 * node:util parseArgs with its errors turned into one clear line plus the
 * command's usage. Its own messages run over several lines and suggest
 * syntax (`--limit=-XYZ`) that would still be wrong for us.
 */
export function parseCliArgs<O extends Options>(args: string[], options: O, usage: string, allowPositionals = false) {
  // `--limit -5` reads to parseArgs as a missing value followed by an option; joined, the
  // value reaches the command's own validation, which says what is wrong with it.
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const name = /^--([\w-]+)$/.exec(args[i]!)?.[1];
    const next = args[i + 1];
    if (name && options[name]?.type === 'string' && next !== undefined && /^-\d/.test(next)) joined.push(`--${name}=${args[++i]}`);
    else joined.push(args[i]!);
  }
  try {
    return parseArgs({ args: joined, options, allowPositionals, strict: true });
  } catch (err) {
    const code = (err as { code?: string }).code ?? '';
    if (!code.startsWith('ERR_PARSE_ARGS')) throw err;
    const option = /'(--?[\w-]+)/.exec((err as Error).message)?.[1];
    const what =
      code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION'
        ? `unknown option ${option ?? ''}`.trim()
        : code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL'
          ? 'unexpected argument'
          : `${option ?? 'an option'} needs a value`;
    throw new CliUsageError(`${what}; usage: ${usage}`);
  }
}

/** A positive whole number option (ids, limits), or undefined when the option is absent. */
export function positiveInt(value: string | undefined, name: string, usage: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) < 1 || !Number.isSafeInteger(Number(value))) {
    throw new CliUsageError(`${name} must be a positive whole number, got "${value}"; usage: ${usage}`);
  }
  return Number(value);
}
