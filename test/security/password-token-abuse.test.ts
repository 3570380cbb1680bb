import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from '../outbound/support/relay-sink.js';
import { Client } from '../portal/support.js';
import { makeUser, PASSWORD, startRig, toAddress, type Rig } from './support/rig.js';

/**
 * Set-password (reset) links: single use, expiring, superseded by a newer
 * link, and not guessable — random tokens are answered 410 and never 200,
 * and guessing through the form is cut off by the per-IP limit. Links are
 * taken from the real mail at the relay, as an attacker with access to an
 * old mail would have them. Each scenario has its own client IP (the app
 * trusts X-Forwarded-For here) so the limits of one do not leak into another.
 */
const PER_IP = 5;
let rig: Rig;

beforeAll(async () => {
  rig = await startRig({ TRUST_PROXY: 'true', RATE_PASSWORD_PER_IP: String(PER_IP), RATE_PASSWORD_PER_ACCOUNT: '20' });
});
afterAll(() => rig?.teardown());

let ipCounter = 0;
const freshClient = () => new Client(rig.base, { 'x-forwarded-for': `198.51.100.${++ipCounter}` });
const randomToken = () => randomBytes(16).toString('base64url');
const NEW_PASSWORD = 'Brand-New-Horse-42';

/** Asks for a link through the form and returns it from the mail the relay received. */
async function mailedLink(email: string): Promise<string> {
  const before = rig.sink.received.filter(toAddress(email)).length;
  const client = freshClient();
  await client.get('/password/new');
  expect((await client.post('/password/new', { email })).status).toBe(200);
  const mails = await rig.sink.waitFor(toAddress(email), before + 1);
  const text = (await parse(mails[before]!)).text ?? '';
  const link = new RegExp(`${rig.base.replace(/\./g, '\\.')}/password/set\\?token=[A-Za-z0-9_-]{22}`).exec(text)?.[0];
  if (!link) throw new Error(`no set-password link in:\n${text}`);
  return link;
}

async function setWith(link: string, password: string) {
  const client = freshClient();
  const form = await client.get(link);
  const res = await client.post(link, { password, password_confirm: password });
  return { form, res };
}

async function canSignIn(email: string, password: string): Promise<boolean> {
  const res = await freshClient().login(email, password);
  return res.status === 303;
}

describe('password-reset token abuse', () => {
  it('a used link cannot be used again: 410 on the page and on submit, and the second password never takes', async () => {
    const user = await makeUser(rig.db);
    const link = await mailedLink(user.email);
    const first = await setWith(link, NEW_PASSWORD);
    expect(first.form.status).toBe(200);
    expect(first.res.status).toBe(303);
    const replay = await setWith(link, 'Attacker-Chosen-99');
    expect(replay.form.status).toBe(410);
    expect(replay.res.status).toBe(410);
    expect(await canSignIn(user.email, 'Attacker-Chosen-99')).toBe(false);
    expect(await canSignIn(user.email, NEW_PASSWORD)).toBe(true);
  });

  it('an expired link is refused (410) and changes nothing', async () => {
    const user = await makeUser(rig.db);
    const link = await mailedLink(user.email);
    // Time passes: the reset link is past its one hour.
    await rig.db
      .updateTable('auth_tokens')
      .set({ expires_at: sql`now() - interval '1 second'` as never })
      .where('user_id', '=', user.id)
      .execute();
    const attempt = await setWith(link, 'Attacker-Chosen-99');
    expect(attempt.form.status).toBe(410);
    expect(attempt.res.status).toBe(410);
    expect(await canSignIn(user.email, PASSWORD)).toBe(true);
    expect(await canSignIn(user.email, 'Attacker-Chosen-99')).toBe(false);
  });

  it('an older link stops working as soon as a newer one is mailed', async () => {
    const user = await makeUser(rig.db);
    const older = await mailedLink(user.email);
    const newer = await mailedLink(user.email);
    expect(newer).not.toBe(older);
    expect((await setWith(older, 'Attacker-Chosen-99')).res.status).toBe(410);
    expect((await setWith(newer, NEW_PASSWORD)).res.status).toBe(303);
    expect(await canSignIn(user.email, NEW_PASSWORD)).toBe(true);
  });

  it('random and malformed tokens are answered 410, never 200 and never a server error', async () => {
    const client = freshClient();
    const tokens = [
      ...Array.from({ length: 25 }, randomToken),
      '',
      'A'.repeat(21),
      'A'.repeat(23),
      "' OR '1'='1",
      '%00%0d%0a',
      '../../etc/passwd',
      'トークン'.repeat(6),
      'x'.repeat(10_000),
    ];
    const statuses = new Set<number>();
    for (const token of tokens) statuses.add((await client.get(`/password/set?token=${encodeURIComponent(token)}`)).status);
    expect([...statuses]).toEqual([410]);
  });

  it('guessing through the form is cut off per IP (429), and once limited a valid link gets the same 429 as a guess', async () => {
    const user = await makeUser(rig.db);
    const valid = await mailedLink(user.email);
    const guesser = freshClient();
    await guesser.get('/login');
    const statuses: number[] = [];
    for (let i = 0; i < PER_IP + 3; i++) {
      statuses.push(
        (await guesser.post(`/password/set?token=${randomToken()}`, { password: NEW_PASSWORD, password_confirm: NEW_PASSWORD })).status,
      );
    }
    expect(statuses).toEqual([...Array<number>(PER_IP).fill(410), 429, 429, 429]);
    const withValid = await guesser.post(valid, { password: 'Attacker-Chosen-99', password_confirm: 'Attacker-Chosen-99' });
    const withGuess = await guesser.post(`/password/set?token=${randomToken()}`, { password: 'x', password_confirm: 'x' });
    expect(withValid.status).toBe(429);
    expect(withValid.html.replace(/value="[^"]*"/g, '')).toBe(withGuess.html.replace(/value="[^"]*"/g, ''));
    expect(await canSignIn(user.email, 'Attacker-Chosen-99')).toBe(false);
  });
});
