import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** 128 bits of randomness, URL-safe (22 characters). */
export function randomSecret(): string {
  return randomBytes(16).toString('base64url');
}

export function isSecretShaped(value: string | undefined): value is string {
  return typeof value === 'string' && /^[A-Za-z0-9_-]{22}$/.test(value);
}

/** Only this digest is stored: a database leak yields no usable token or session id. */
export function sha256(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

export function hmac(secret: string, purpose: string, value: string): string {
  return createHmac('sha256', secret).update(`${purpose}\0${value}`).digest('base64url');
}

export function safeEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a);
  const bb = Buffer.from(b);
  return ab.length === bb.length && timingSafeEqual(ab, bb);
}

const sealKey = (secret: string) => createHmac('sha256', secret).update('seal\0outbox').digest();

/**
 * AES-256-GCM under a key derived from SECRET_KEY: a value the outbox must
 * hold until the mail is sent (a set-password token) is never stored raw,
 * so a database dump alone yields nothing usable.
 */
export function seal(secret: string, plain: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', sealKey(secret), iv);
  const body = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64url');
}

/** The sealed value, or null when it was not sealed with this SECRET_KEY or was altered. */
export function unseal(secret: string, sealed: string): string | null {
  const buf = Buffer.from(sealed, 'base64url');
  if (buf.length < 29) return null;
  try {
    const decipher = createDecipheriv('aes-256-gcm', sealKey(secret), buf.subarray(0, 12));
    decipher.setAuthTag(buf.subarray(12, 28));
    return Buffer.concat([decipher.update(buf.subarray(28)), decipher.final()]).toString('utf8');
  } catch {
    return null;
  }
}
