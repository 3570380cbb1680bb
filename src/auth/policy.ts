import type { Config } from '../config.js';
import { PASSWORD_MAX_LENGTH } from './password.js';

/**
 * The password policy, every rule configurable. Violations are codes, not
 * sentences: the portal turns them into the reader's language.
 */
export type PolicyViolation = 'too_short' | 'too_long' | 'too_few_classes' | 'contains_email' | 'mismatch';

export type PolicyConfig = Pick<Config, 'PASSWORD_MIN_LENGTH' | 'PASSWORD_MIN_CLASSES' | 'PASSWORD_FORBID_EMAIL_LOCAL'>;

/** Local parts this short would forbid common letter pairs rather than the address. */
const MIN_LOCAL_PART_TO_FORBID = 3;

/** The four classes: lower case, upper case, digits, and everything else (symbols, spaces, kana, kanji…). */
export function characterClasses(password: string): number {
  let classes = 0;
  if (/\p{Ll}/u.test(password)) classes++;
  if (/\p{Lu}/u.test(password)) classes++;
  if (/\p{Nd}/u.test(password)) classes++;
  if (/[^\p{Ll}\p{Lu}\p{Nd}]/u.test(password)) classes++;
  return classes;
}

export function checkPasswordPolicy(policy: PolicyConfig, password: string, email: string, confirm?: string): PolicyViolation[] {
  const violations: PolicyViolation[] = [];
  const length = [...password].length; // code points: a kanji counts once
  if (length < policy.PASSWORD_MIN_LENGTH) violations.push('too_short');
  if (password.length > PASSWORD_MAX_LENGTH) violations.push('too_long');
  if (characterClasses(password) < policy.PASSWORD_MIN_CLASSES) violations.push('too_few_classes');
  if (policy.PASSWORD_FORBID_EMAIL_LOCAL) {
    const local = email.slice(0, email.lastIndexOf('@')).toLowerCase();
    if (local.length >= MIN_LOCAL_PART_TO_FORBID && password.toLowerCase().includes(local)) violations.push('contains_email');
  }
  if (confirm !== undefined && confirm !== password) violations.push('mismatch');
  return violations;
}
