import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

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
