import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { COMMANDS } from '../../src/cli/run.js';

/**
 * The quick start is the first thing a newcomer runs, command by command.
 * It used to tell them to create the database first (the app creates it) and
 * left out how a local staff reply gets through; these checks keep it honest
 * about the commands and settings it names.
 */
const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
const quickStart = readme.slice(readme.indexOf('## Quick start'), readme.indexOf('## Running the tests'));

describe('README quick start', () => {
  it('takes Docker and no-Docker users from start to a staff reply seen in the portal', () => {
    expect(quickStart).toContain('docker compose up');
    expect(quickStart).toContain('npm start');
    expect(quickStart).toMatch(/rl doctor/);
    expect(quickStart).toMatch(/rl staff add /);
    expect(quickStart).toContain('--mail-rcpt support@localhost');
    expect(quickStart).toContain('--mail-rcpt "$REPLY_TO"');
    expect(quickStart).toContain('/password/new');
    // A local trial's staff reply cannot pass DMARC; the quick start must say how it gets through.
    expect(quickStart).toContain('STAFF_AUTH=token');
  });

  it('STAFF_AUTH=token docker compose up reaches replyline: the compose file passes STAFF_AUTH through', () => {
    const compose = readFileSync(new URL('../../docker-compose.yml', import.meta.url), 'utf8');
    expect(quickStart).toContain('STAFF_AUTH=token docker compose up');
    expect(compose).toMatch(/^\s+STAFF_AUTH: \$\{STAFF_AUTH:-dmarc\}$/m);
  });

  it('never tells anyone to create the database by hand', () => {
    expect(quickStart).not.toMatch(/createdb replyline|create the database first/i);
    expect(quickStart).toMatch(/creates the database/);
  });

  it('only names CLI commands that exist', () => {
    const known = COMMANDS.map((c) => c.words.join(' '));
    for (const m of readme.matchAll(/(?:^|\s)rl ([a-z]+(?: [a-z]+)?)/gm)) {
      const words = m[1]!;
      expect(
        known.some((k) => words === k || words.startsWith(`${k} `) || k === words.split(' ')[0]),
        words,
      ).toBe(true);
    }
    expect(known).toContain('doctor');
  });
});
