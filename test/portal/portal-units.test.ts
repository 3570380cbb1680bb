import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { characterClasses, checkPasswordPolicy } from '../../src/auth/policy.js';
import { needsRehash, hashPassword, verifyPassword } from '../../src/auth/password.js';
import { safeReturnPath } from '../../src/portal/http.js';
import { sanitizeFilename } from '../../src/portal/new-request.js';
import { sanitizeMailHtml } from '../../src/portal/sanitize.js';

const policy = { PASSWORD_MIN_LENGTH: 8, PASSWORD_MIN_CLASSES: 3, PASSWORD_FORBID_EMAIL_LOCAL: true };

describe('password policy', () => {
  it('accepts a password meeting the seed policy (8+ chars, 3 of 4 classes, no email local part)', () => {
    expect(checkPasswordPolicy(policy, 'Tr0ub4dor-x', 'taro@example.jp')).toEqual([]);
  });

  it('reports every rule a password breaks, not just the first', () => {
    expect(checkPasswordPolicy(policy, 'taro', 'taro@example.jp', 'other')).toEqual([
      'too_short',
      'too_few_classes',
      'contains_email',
      'mismatch',
    ]);
  });

  it('forbids the part before @ case-insensitively, anywhere in the password', () => {
    expect(checkPasswordPolicy(policy, 'xxYAMADA-2024', 'yamada@example.jp')).toContain('contains_email');
  });

  it('does not apply the email rule for local parts shorter than 3 characters', () => {
    expect(checkPasswordPolicy(policy, 'Ab1-Ab1-Ab1', 'ab@example.jp')).toEqual([]);
  });

  it('follows each configurable rule: 12 characters, 4 classes, email rule off', () => {
    const strict = { PASSWORD_MIN_LENGTH: 12, PASSWORD_MIN_CLASSES: 4, PASSWORD_FORBID_EMAIL_LOCAL: false };
    expect(checkPasswordPolicy(strict, 'Abcdef12345', 'abc@x.jp')).toEqual(['too_short', 'too_few_classes']);
    expect(checkPasswordPolicy(strict, 'abc-Def-12345', 'abc@x.jp')).toEqual([]);
  });

  it('counts code points, so a Japanese passphrase is measured by characters, not UTF-16 units', () => {
    expect(checkPasswordPolicy({ ...policy, PASSWORD_MIN_CLASSES: 0 }, '𠮷野家𠮷野家𠮷', 'a@b.jp')).toEqual(['too_short']);
    expect(characterClasses('パスワードAa1')).toBe(4); // kana count as "other"
  });
});

describe('argon2id hashing', () => {
  it('hashes with argon2id m=19456 t=2 p=1 and verifies only the right password', async () => {
    const hash = await hashPassword('Correct-Horse-9');
    expect(hash.startsWith('$argon2id$v=19$m=19456,t=2,p=1$')).toBe(true);
    expect(needsRehash(hash)).toBe(false);
    expect(await verifyPassword(hash, 'Correct-Horse-9')).toBe(true);
    expect(await verifyPassword(hash, 'correct-horse-9')).toBe(false);
  });

  it('never signs in with no stored hash or a corrupt one', async () => {
    expect(await verifyPassword(null, 'anything')).toBe(false);
    expect(await verifyPassword('not-a-hash', 'anything')).toBe(false);
  });
});

describe('return paths', () => {
  it.each(['//evil.test/x', 'https://evil.test', '/\\evil.test', 'javascript:alert(1)', '/a\r\nSet-Cookie: x'])(
    'refuses %j and falls back to /requests',
    (value) => expect(safeReturnPath(value)).toBe('/requests'),
  );

  it('keeps a local path with its query', () => {
    expect(safeReturnPath('/requests?filter=cc&page=2')).toBe('/requests?filter=cc&page=2');
  });
});

describe('uploaded file names', () => {
  it('strips directories, control characters and header-breaking characters', () => {
    expect(sanitizeFilename('../../etc/passwd')).toBe('passwd');
    expect(sanitizeFilename('C:\\Users\\me\\report.pdf')).toBe('report.pdf');
    expect(sanitizeFilename('a"b\r\nContent-Type: x.txt')).toBe('abContent-Type x.txt');
    expect(sanitizeFilename('...')).toBe('attachment');
  });

  it('keeps Japanese names and the extension when shortening', () => {
    expect(sanitizeFilename('請求書.pdf')).toBe('請求書.pdf');
    const long = sanitizeFilename(`${'長'.repeat(300)}.xlsx`);
    expect(long.length).toBe(200);
    expect(long.endsWith('.xlsx')).toBe(true);
  });
});

describe('render-time HTML sanitising', () => {
  it('removes script, event handlers, javascript: links, styles, forms and iframes', () => {
    const out = sanitizeMailHtml(
      '<p onclick="x()">Hi<script>alert(1)</script><style>p{}</style><a href="javascript:alert(1)">a</a>' +
        '<iframe src="https://evil.test"></iframe><form action="/logout"><button>b</button></form><img src="x" onerror="alert(1)"></p>',
    );
    expect(out).not.toMatch(/script|onclick|onerror|javascript:|<style|<iframe|<form|<button/i);
    expect(out).toContain('Hi');
  });

  it('keeps ordinary formatting and makes links open safely', () => {
    const out = sanitizeMailHtml('<p><b>bold</b> <a href="https://example.com/">link</a></p>');
    expect(out).toContain('<b>bold</b>');
    expect(out).toMatch(/<a href="https:\/\/example.com\/" rel="noopener noreferrer nofollow" target="_blank">link<\/a>/);
  });
});

describe('message catalogues', () => {
  it('has the same keys and placeholders in English and Japanese', () => {
    const load = (l: string) =>
      JSON.parse(readFileSync(new URL(`../../templates/portal/i18n/${l}.json`, import.meta.url), 'utf8')) as Record<string, string>;
    const en = load('en');
    const ja = load('ja');
    expect(Object.keys(ja).sort()).toEqual(Object.keys(en).sort());
    const vars = (s: string) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();
    for (const key of Object.keys(en)) expect(vars(ja[key]!), key).toEqual(vars(en[key]!));
  });
});
