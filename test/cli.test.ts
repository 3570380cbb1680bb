import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../src/cli/run.js';
import type { Config } from '../src/config.js';
import { createDb } from '../src/db/database.js';
import { ensureUser, ensureUsers } from '../src/db/queries/users.js';
import { createTestDatabase, testConfig } from './support/env.js';

const exec = promisify(execFile);

describe('cli', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let config: Config;
  beforeAll(async () => {
    database = await createTestDatabase();
    config = testConfig(database.url);
  });
  afterAll(() => database.drop());
  const dbName = () => new URL(database.url).pathname.slice(1);
  const dbHost = () => new URL(database.url).host;

  async function cli(...argv: string[]) {
    const out: string[] = [];
    const err: string[] = [];
    const code = await runCli(argv, config, { out: (l) => out.push(l), err: (l) => err.push(l) });
    return { code, out: out.join('\n'), err: err.join('\n') };
  }

  it('adds staff and lists them, normalising the address', async () => {
    expect((await cli('staff', 'add', 'Agent@Example.com', '--name', 'Ann Agent')).code).toBe(0);
    const list = await cli('staff', 'list');
    expect(list.code).toBe(0);
    expect(list.out).toMatch(/agent@example\.com\tAnn Agent\tno password/);
  });

  it('rejects an invalid address with exit 1 and a one-line reason', async () => {
    const r = await cli('staff', 'add', 'not-an-address');
    expect(r.code).toBe(1);
    expect(r.err.split('\n')[1]).toBe('error: invalid email address: "not-an-address"');
  });

  it('rejects a duplicate (case-insensitively) with exit 1', async () => {
    await cli('user', 'add', 'dup@example.com');
    const r = await cli('user', 'add', 'DUP@example.com');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/already exists/);
    expect(r.err.split('\n')).toHaveLength(2); // the database line, then the one-line reason
  });

  it('pre-registers customers for closed mode and lists them apart from staff', async () => {
    await cli('user', 'add', 'customer@example.com', '--name', 'Cus Tomer');
    const users = await cli('user', 'list');
    expect(users.out).toContain('customer@example.com');
    expect(users.out).not.toContain('agent@example.com');
  });

  it('promotes an implicit customer account to staff instead of failing', async () => {
    await cli('user', 'add', 'became-staff@example.com');
    const r = await cli('staff', 'add', 'became-staff@example.com');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/promoted/);
    expect((await cli('staff', 'list')).out).toContain('became-staff@example.com');
  });

  it('exits 2 with usage on an unknown command or missing argument', async () => {
    expect((await cli('frobnicate')).code).toBe(2);
    const r = await cli('staff', 'add');
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/usage: staff add <email>/);
  });

  it('works as a real process, exiting non-zero with one line on bad input', async () => {
    const env = { ...process.env, DATABASE_URL: database.url, LOG_LEVEL: 'silent' };
    const ok = await exec(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'staff', 'add', 'proc@example.com'], { env });
    expect(ok.stdout).toMatch(/added staff proc@example\.com/);
    const bad = await exec(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'staff', 'add', 'nope'], { env }).catch((e) => e);
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim().split('\n')).toEqual([`database: ${dbName()} on ${dbHost()}`, 'error: invalid email address: "nope"']);
  }, 90_000); // two cold tsx processes: slow on a loaded 2-core machine

  it('names the database it works on in one stderr line, and says when that is only the default', async () => {
    for (const argv of [['staff', 'list'], ['user', 'list'], ['held', 'list'], ['migrate']]) {
      const r = await cli(...argv);
      expect(r.code, argv.join(' ')).toBe(0);
      expect(r.err.split('\n'), argv.join(' ')).toEqual([`database: ${dbName()} on ${dbHost()}`]);
    }
    const err: string[] = [];
    await runCli(['staff', 'list'], config, { out: () => {}, err: (l) => err.push(l) }, { databaseUrlFromEnv: false });
    expect(err[0]).toBe(`database: ${dbName()} on ${dbHost()} (the default; set DATABASE_URL to use another)`);
  });

  it('prints usage on stdout and exits 0 for help, --help and -h, also after a command', async () => {
    for (const argv of [['help'], ['--help'], ['-h'], []]) {
      const r = await cli(...argv);
      expect(r.code, argv.join(' ')).toBe(0);
      expect(r.out).toMatch(/^usage: npm run cli -- <command>/);
      expect(r.out).toContain('doctor');
      expect(r.err).toBe('');
    }
    const sub = await cli('held', 'list', '--help');
    expect(sub).toEqual({ code: 0, out: 'usage: held list [--reason REASON] [--limit N]', err: '' });
  });

  it('answers argument errors with exit 2 and one clear line', async () => {
    const cases: Array<[string[], string]> = [
      [
        ['held', 'list', '--limit', '-5'],
        'error: --limit must be a positive whole number, got "-5"; usage: held list [--reason REASON] [--limit N]',
      ],
      [
        ['held', 'list', '--limit', 'ten'],
        'error: --limit must be a positive whole number, got "ten"; usage: held list [--reason REASON] [--limit N]',
      ],
      [['held', 'list', '--limit'], 'error: --limit needs a value; usage: held list [--reason REASON] [--limit N]'],
      [['held', 'list', '--bogus'], 'error: unknown option --bogus; usage: held list [--reason REASON] [--limit N]'],
      [
        ['requeue', '--outbound-id', '0'],
        'error: --outbound-id must be a positive whole number, got "0"; usage: requeue [--outbound-id N] [--inbound-id N]',
      ],
      [['frobnicate'], 'error: unknown command "frobnicate"; run "npm run cli -- help" for the list of commands'],
    ];
    for (const [argv, line] of cases) {
      const r = await cli(...argv);
      expect(r.code, argv.join(' ')).toBe(2);
      expect(r.err.split('\n').filter((l) => !l.startsWith('database: '))).toEqual([line]);
    }
  });

  /**
   * Organizations: created with domains and sharing, listed, members added and
   * removed by address; an account created later with an address at a listed
   * domain joins by itself, whichever path creates it (cli, ensureUser, the
   * inbound batch's ensureUsers), and a subdomain does not.
   */
  it('manages organizations and joins new accounts by domain on every creation path', async () => {
    const add = await cli('org', 'add', 'Acme', 'KK', '--domain', 'acme.co.jp', '--domain', '@ACME.example', '--shared');
    expect(add.code).toBe(0);
    expect(add.out).toMatch(/^added organization \d+\tAcme KK\tshared\tacme\.co\.jp,acme\.example\t0 members$/);
    expect((await cli('org', 'add', 'Solo')).out).toMatch(/\tSolo\tnot shared\t-\t0 members$/);

    expect((await cli('user', 'add', 'taro@acme.co.jp')).code).toBe(0);
    expect((await cli('user', 'add', 'jiro@sales.acme.co.jp')).code).toBe(0);
    const db = createDb(database.url, 1);
    try {
      await ensureUser(db, { email: 'Hanako@ACME.example' });
      await ensureUsers(db, [{ email: 'ichiro@acme.co.jp' }, { email: 'other@elsewhere.example' }]);
    } finally {
      await db.destroy();
    }
    expect((await cli('org', 'list')).out).toMatch(/\tAcme KK\tshared\tacme\.co\.jp,acme\.example\t3 members/);

    expect((await cli('org', 'members', 'add', 'acme kk', 'jiro@sales.acme.co.jp')).out).toBe('added jiro@sales.acme.co.jp to Acme KK');
    expect((await cli('org', 'members', 'add', 'Acme KK', 'jiro@sales.acme.co.jp')).out).toBe(
      'jiro@sales.acme.co.jp is already a member of Acme KK',
    );
    expect((await cli('org', 'members', 'remove', 'Acme KK', 'taro@acme.co.jp')).out).toBe('removed taro@acme.co.jp from Acme KK');
    expect((await cli('org', 'list')).out).toMatch(/\tAcme KK\t.*\t3 members/);

    const taken = await cli('org', 'add', 'Copycat', '--domain', 'acme.co.jp');
    expect(taken.code).toBe(1);
    expect(taken.err.split('\n')[1]).toBe('error: domain acme.co.jp already belongs to organization "Acme KK"');
    expect((await cli('org', 'add', 'ACME kk')).err).toMatch(/already exists/);
    const unknown = await cli('org', 'members', 'add', 'Nope', 'taro@acme.co.jp');
    expect([unknown.code, unknown.err.split('\n')[1]]).toEqual([1, 'error: no organization "Nope" (see org list)']);
    expect((await cli('org', 'members', 'add', 'Acme KK', 'nobody@acme.co.jp')).code).toBe(1);
  });

  it('answers org argument errors with exit 2 and one line', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['org', 'add'], /^error: usage: org add <name>/],
      [['org', 'add', 'X', '--domain', 'not a domain'], /^error: --domain must be a domain such as example\.co\.jp, got "not a domain"/],
      [['org', 'add', 'X', '--domain'], /^error: --domain needs a value/],
      [['org', 'members', 'add', 'Acme'], /^error: usage: org members add <org> <email>$/],
      [['org', 'members', 'remove'], /^error: usage: org members remove <org> <email>$/],
      [['org', 'list', 'extra'], /^error: unexpected argument; usage: org list$/],
    ];
    for (const [argv, line] of cases) {
      const r = await cli(...argv);
      expect(r.code, argv.join(' ')).toBe(2);
      const lines = r.err.split('\n').filter((l) => !l.startsWith('database: '));
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(line);
    }
  });
});
