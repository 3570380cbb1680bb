import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, uniqueEmail, type Page } from '../portal/support.js';
import { makeUser, startRig, submit, SUPPORT, type Rig } from './support/rig.js';

/**
 * User enumeration: /password/new, /signup and /login must not tell an
 * attacker whether an address has an account (with a password, or only the
 * implicit one a first mail creates) — not by status, not by the page, not by
 * the headers, and not by how long the answer takes. The timing check
 * compares medians over interleaved requests and allows 100 ms against the
 * 400 ms response floor: a security property, not a performance assertion.
 */
const FLOOR_MS = 400;
const TIMING_SLACK_MS = 100;
let rig: Rig;
let holder: string;
let implicit: string;

beforeAll(async () => {
  rig = await startRig({
    PORTAL_RESPONSE_FLOOR_MS: String(FLOOR_MS),
    RATE_LOGIN_PER_IP: '10000',
    RATE_LOGIN_PER_ACCOUNT: '10000',
    RATE_PASSWORD_PER_IP: '10000',
    RATE_PASSWORD_PER_ACCOUNT: '10000',
  });
  holder = (await makeUser(rig.db, { name: 'Holder' })).email;
  // The implicit account: created by a first mail, no password yet.
  implicit = uniqueEmail('implicit');
  expect((await submit(rig, { from: implicit, to: SUPPORT, subject: 'hello', text: 'first mail' })).status).toBe('processed');
});
afterAll(() => rig?.teardown());

/** What an observer compares: status, the page with the typed address and per-visitor tokens masked, and header names. */
function observable(page: Page, email: string) {
  return {
    status: page.status,
    html: page.html.replaceAll(email, '<EMAIL>').replace(/name="_csrf" value="[^"]*"/g, 'name="_csrf"'),
    headers: [...page.headers.keys()].filter((h) => !['date', 'content-length'].includes(h)).sort(),
  };
}

async function timed(fn: () => Promise<Page>): Promise<{ page: Page; ms: number }> {
  const started = performance.now();
  const page = await fn();
  return { page, ms: performance.now() - started };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

/**
 * Runs one request per kind of address, interleaved, `rounds` times; returns
 * what each kind looked like and its median time.
 */
async function probe(kinds: Record<string, () => string>, send: (client: Client, email: string) => Promise<Page>, rounds: number) {
  const seen: Record<string, Array<ReturnType<typeof observable>>> = {};
  const times: Record<string, number[]> = {};
  for (let i = 0; i < rounds; i++) {
    for (const [kind, address] of Object.entries(kinds)) {
      const email = address();
      const client = new Client(rig.base);
      await client.get('/login'); // the visitor's pre-session CSRF cookie and token
      const { page, ms } = await timed(() => send(client, email));
      (seen[kind] ??= []).push(observable(page, email));
      (times[kind] ??= []).push(ms);
    }
  }
  const medians = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, Math.round(median(v))]));
  const fastest = Math.round(Math.min(...Object.values(times).flat()));
  console.log(`enumeration timing medians (ms): ${JSON.stringify(medians)}; fastest answer ${fastest} ms`);
  return { seen, medians, fastest };
}

function expectIndistinguishable(r: Awaited<ReturnType<typeof probe>>, reference: string) {
  const ref = r.seen[reference]![0]!;
  for (const [kind, list] of Object.entries(r.seen)) {
    for (const o of list) {
      expect(o.status, kind).toBe(ref.status);
      expect(o.headers, kind).toEqual(ref.headers);
      expect(o.html, kind).toBe(ref.html);
    }
    expect(Math.abs(r.medians[kind]! - r.medians[reference]!), `${kind} vs ${reference} median`).toBeLessThan(TIMING_SLACK_MS);
  }
}

describe('user enumeration by body, status, headers and timing', () => {
  it('/password/new: an address with a password, an implicit account and an unknown address look the same', async () => {
    const r = await probe(
      { unknown: () => uniqueEmail('ghost'), holder: () => holder, implicit: () => implicit },
      (c, email) => c.post('/password/new', { email }),
      5,
    );
    expect(r.seen.unknown![0]!.status).toBe(200);
    expectIndistinguishable(r, 'unknown');
    // The mechanism behind equal timing: no answer, for any kind of address, comes before the floor.
    expect(r.fastest).toBeGreaterThanOrEqual(FLOOR_MS);
  }, 60_000);

  it('/signup: signing up with an existing address looks exactly like a new sign-up', async () => {
    const r = await probe(
      { unknown: () => uniqueEmail('newbie'), holder: () => holder, implicit: () => implicit },
      (c, email) => c.post('/signup', { name: 'Eve Prober', email }),
      5,
    );
    expect(r.seen.unknown![0]!.status).toBe(200);
    expectIndistinguishable(r, 'unknown');
    expect(r.fastest).toBeGreaterThanOrEqual(FLOOR_MS);
    // …and an existing account was not taken over or renamed by it.
    const row = await rig.db.selectFrom('users').select(['name', 'password_hash']).where('email', '=', holder).executeTakeFirstOrThrow();
    expect(row.name).toBe('Holder');
    expect(row.password_hash).not.toBeNull();
  }, 60_000);

  it('/login: unknown address, wrong password and an account without a password fail identically', async () => {
    const r = await probe(
      { unknown: () => uniqueEmail('ghost'), holder: () => holder, implicit: () => implicit },
      (c, email) => c.post('/login', { email, password: 'Wrong-Pass-123' }),
      7,
    );
    expect(r.seen.unknown![0]!.status).toBe(401);
    expectIndistinguishable(r, 'unknown');
  }, 60_000);
});
