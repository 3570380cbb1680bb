import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ConfigError, DEV_SECRET_KEY, loadConfig } from '../src/config.js';
import { isValidEmail } from '../src/core/address.js';

describe('config', () => {
  it('applies the documented defaults to an empty environment', () => {
    const c = loadConfig({});
    expect(c.DATABASE_URL).toBe('postgres://postgres@127.0.0.1:5432/replyline');
    expect(c.REDIS_URL).toBe('redis://127.0.0.1:6379');
    expect(c.SMTP_LISTEN).toEqual({ host: '0.0.0.0', port: 2525 });
    expect(c.HTTP_LISTEN).toEqual({ host: '0.0.0.0', port: 3000 });
    expect(c.PUBLIC_URL).toBe('http://localhost:3000');
    expect(c.SUPPORT_ADDRESSES).toEqual(['support@localhost']);
    expect(c.MAIL_DOMAIN).toBe('localhost');
    expect(c.OUTBOUND_SMTP_URL).toBe('smtp://127.0.0.1:1025');
    expect(c.MAIL_FROM).toBe('Support <support@localhost>');
    expect(c.REGISTRATION).toBe('open');
    expect(c.REPLYLINE_ROLES).toEqual(['smtp', 'worker', 'portal']);
    expect(c.SECRET_KEY).toBe(DEV_SECRET_KEY);
    expect(c.usingDevSecret).toBe(true);
  });

  it('returns a frozen object so no module can change settings at run time', () => {
    const c = loadConfig({});
    expect(Object.isFrozen(c)).toBe(true);
    expect(() => {
      (c as { REGISTRATION: string }).REGISTRATION = 'closed';
    }).toThrow(TypeError);
    // Nested values too: a module pushing to the support addresses or moving a listener must fail.
    expect(() => (c.SUPPORT_ADDRESSES as string[]).push('evil@example.com')).toThrow(TypeError);
    expect(() => {
      (c.SMTP_LISTEN as { port: number }).port = 25;
    }).toThrow(TypeError);
    expect(c.SUPPORT_ADDRESSES).toEqual(['support@localhost']);
  });

  it('reports every problem in one error instead of stopping at the first', () => {
    let error: unknown;
    try {
      loadConfig({
        DATABASE_URL: 'not a url',
        SMTP_LISTEN: 'localhost',
        SUPPORT_ADDRESSES: 'support@example.com, nope',
        REGISTRATION: 'maybe',
        REPLYLINE_ROLES: 'smtp,mailer',
      });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems.join('\n');
    for (const key of ['DATABASE_URL', 'SMTP_LISTEN', 'SUPPORT_ADDRESSES', 'REGISTRATION', 'REPLYLINE_ROLES']) {
      expect(problems).toContain(key);
    }
    expect((error as ConfigError).message).toContain('"nope" is not an email address');
  });

  it('requires SECRET_KEY in production and rejects short keys', () => {
    expect(() => loadConfig({ NODE_ENV: 'production' })).toThrow(/SECRET_KEY: is required when NODE_ENV=production/);
    expect(() => loadConfig({ SECRET_KEY: 'short' })).toThrow(/SECRET_KEY: must be at least 32 characters/);
    const c = loadConfig({ NODE_ENV: 'production', SECRET_KEY: 'x'.repeat(40) });
    expect(c.usingDevSecret).toBe(false);
  });

  it('parses roles, listen addresses, lists and derived values', () => {
    const c = loadConfig({
      REPLYLINE_ROLES: 'worker, smtp',
      SMTP_LISTEN: '[::1]:25',
      HTTP_LISTEN: ':8080',
      SUPPORT_ADDRESSES: 'Help@Example.com,billing@example.com',
      PUBLIC_URL: 'https://help.example.com/',
      DNS_SERVERS: '127.0.0.1:5353, 10.0.0.1:53',
    });
    expect(c.REPLYLINE_ROLES).toEqual(['worker', 'smtp']);
    expect(c.SMTP_LISTEN).toEqual({ host: '::1', port: 25 });
    expect(c.HTTP_LISTEN).toEqual({ host: '0.0.0.0', port: 8080 });
    expect(c.SUPPORT_ADDRESSES).toEqual(['help@example.com', 'billing@example.com']);
    expect(c.MAIL_DOMAIN).toBe('example.com');
    expect(c.PUBLIC_URL).toBe('https://help.example.com');
    expect(c.secureCookies).toBe(true);
    expect(c.DNS_SERVERS).toEqual(['127.0.0.1:5353', '10.0.0.1:53']);
  });

  it('treats empty variables as unset, as docker-compose produces them', () => {
    expect(loadConfig({ REGISTRATION: '', MAIL_DOMAIN: '' }).REGISTRATION).toBe('open');
  });

  it('accepts a dotless local domain such as support@localhost, as docker-compose.yml sets it', () => {
    expect(loadConfig({ SUPPORT_ADDRESSES: 'support@localhost' }).SUPPORT_ADDRESSES).toEqual(['support@localhost']);
    expect(loadConfig({ SUPPORT_ADDRESSES: 'help@intranet, support@help.test' }).MAIL_DOMAIN).toBe('intranet');
    for (const ok of ['support@localhost', 'a.b+c@help.example.com']) expect(isValidEmail(ok)).toBe(true);
    for (const bad of ['nope', '@localhost', '.a@localhost', 'a..b@example.com', 'a@-x', 'a@x.', 'a@x..y', 'a b@x']) {
      expect(isValidEmail(bad), bad).toBe(false);
    }
  });

  it('parses every default exactly like the same value set explicitly (README Configuration table)', () => {
    // Defaults used to bypass validation: support@localhost only worked while the variable was unset.
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const section = readme.slice(readme.indexOf('## Configuration'), readme.indexOf('## Command line'));
    const explicit: Record<string, string> = {};
    for (const m of section.matchAll(/^\| `([A-Z_]+)` \| `([^`]+)` \|/gm)) explicit[m[1]!] = m[2]!;
    delete explicit.MAIL_FROM; // documented as a description ("first support address"), not a value
    expect(Object.keys(explicit)).toEqual(expect.arrayContaining(['SUPPORT_ADDRESSES', 'SMTP_LISTEN', 'HTTP_LISTEN', 'STAFF_AUTH']));
    expect(loadConfig(explicit)).toEqual(loadConfig({}));
  });

  it('reads the mail file settings: sizes in bytes, FILE_LINK_TTL as seconds or with a unit', () => {
    const d = loadConfig({});
    expect(d.MAIL_ATTACH_MAX_BYTES).toBe(10 * 1024 * 1024);
    expect(d.FILE_LINK_TTL).toBe(30 * 24 * 60 * 60_000);
    expect(d.MAIL_HISTORY_MESSAGES).toBe(5);
    expect(loadConfig({ FILE_LINK_TTL: '3600' }).FILE_LINK_TTL).toBe(3_600_000);
    expect(loadConfig({ FILE_LINK_TTL: '90m' }).FILE_LINK_TTL).toBe(5_400_000);
    expect(loadConfig({ FILE_LINK_TTL: '12h' }).FILE_LINK_TTL).toBe(43_200_000);
    expect(loadConfig({ FILE_LINK_TTL: '7d' }).FILE_LINK_TTL).toBe(7 * 86_400_000);
    for (const bad of ['0', '-5', '1w', 'soon']) expect(() => loadConfig({ FILE_LINK_TTL: bad }), bad).toThrow(ConfigError);
  });
});

describe('lifecycle durations', () => {
  it('default to Zendesk-like days, accept units and "off", and refuse a reminder that would come after the auto-solve', () => {
    const d = loadConfig({});
    expect([d.SOLVED_CLOSE_AFTER, d.PENDING_REMINDER_AFTER, d.PENDING_SOLVE_AFTER]).toEqual([
      4 * 86_400_000,
      3 * 86_400_000,
      7 * 86_400_000,
    ]);
    const c = loadConfig({ SOLVED_CLOSE_AFTER: '36h', PENDING_REMINDER_AFTER: 'off', PENDING_SOLVE_AFTER: '90m' });
    expect([c.SOLVED_CLOSE_AFTER, c.PENDING_REMINDER_AFTER, c.PENDING_SOLVE_AFTER]).toEqual([36 * 3_600_000, null, 90 * 60_000]);
    expect(loadConfig({ SOLVED_CLOSE_AFTER: '1500' }).SOLVED_CLOSE_AFTER).toBe(1_500_000); // bare numbers are seconds, as for FILE_LINK_TTL
    expect(() => loadConfig({ SOLVED_CLOSE_AFTER: 'soon' })).toThrow(/SOLVED_CLOSE_AFTER: expected a duration/);
    expect(() => loadConfig({ PENDING_REMINDER_AFTER: '8d' })).toThrow(/PENDING_REMINDER_AFTER: must be shorter than PENDING_SOLVE_AFTER/);
  });
});

describe('collision window and satisfaction survey', () => {
  it('default to 2 minutes and a survey 24 h after solving; accept "off" and units', () => {
    const d = loadConfig({});
    expect([d.COLLISION_WINDOW, d.CSAT, d.CSAT_AFTER]).toEqual([2 * 60_000, true, 24 * 3_600_000]);
    const c = loadConfig({ COLLISION_WINDOW: 'off', CSAT: 'off', CSAT_AFTER: '90m' });
    expect([c.COLLISION_WINDOW, c.CSAT, c.CSAT_AFTER]).toEqual([null, false, 90 * 60_000]);
    expect(() => loadConfig({ CSAT_AFTER: 'off' })).toThrow(/CSAT_AFTER/);
    expect(() => loadConfig({ CSAT: 'maybe' })).toThrow(/CSAT/);
  });
});
