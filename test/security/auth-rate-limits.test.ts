import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, startPortalApp, uniqueEmail, type PortalTestApp } from '../portal/support.js';
import { makeUser, PASSWORD, settle, startRig, toAddress, type Rig } from './support/rig.js';

/**
 * Brute force against sign-in and "get a password": limited per client IP
 * (one machine spraying many accounts) and per account (a botnet on one
 * account), for known and unknown addresses alike. Behind a proxy
 * (TRUST_PROXY=true) the client IP is the right-most X-Forwarded-For hop;
 * without it the header is ignored, so rotating it gains nothing.
 */
const LIMITS = { RATE_LOGIN_PER_IP: 6, RATE_LOGIN_PER_ACCOUNT: 3, RATE_PASSWORD_PER_IP: 4, RATE_PASSWORD_PER_ACCOUNT: 2 };
let rig: Rig;
let direct: PortalTestApp;

beforeAll(async () => {
  const limits = Object.fromEntries(Object.entries(LIMITS).map(([k, v]) => [k, String(v)]));
  rig = await startRig({ TRUST_PROXY: 'true', ...limits });
  direct = await startPortalApp({ TRUST_PROXY: 'false', ...limits });
});
afterAll(async () => {
  await rig?.teardown();
  await direct?.teardown();
});

let ipCounter = 0;
const nextIp = () => `203.0.113.${++ipCounter}`;
const from = (ip: string, base = rig.base) => new Client(base, { 'x-forwarded-for': ip });

async function login(client: Client, email: string, password: string): Promise<number> {
  return (await client.login(email, password)).status;
}

async function askForLink(client: Client, email: string): Promise<number> {
  await client.get('/password/new');
  return (await client.post('/password/new', { email })).status;
}

describe('sign-in limits', () => {
  it('per account: a guesser using a new IP and a new spelling of the address for every try is refused from attempt 4 on, even with the right password; other accounts are unaffected', async () => {
    const victim = await makeUser(rig.db);
    const spellings = [victim.email, victim.email.toUpperCase(), `  ${victim.email} `];
    const statuses: number[] = [];
    for (let i = 0; i < LIMITS.RATE_LOGIN_PER_ACCOUNT; i++)
      statuses.push(await login(from(nextIp()), spellings[i % spellings.length]!, `Guess-${i}-Aa1`));
    statuses.push(await login(from(nextIp()), victim.email, PASSWORD));
    expect(statuses).toEqual([401, 401, 401, 429]);
    const bystander = await makeUser(rig.db);
    expect(await login(from(nextIp()), bystander.email, PASSWORD)).toBe(303);
  });

  it('per account: an unknown address is limited exactly like a real one, so the 429 reveals nothing', async () => {
    const ghost = uniqueEmail('ghost');
    const statuses: number[] = [];
    for (let i = 0; i <= LIMITS.RATE_LOGIN_PER_ACCOUNT; i++) statuses.push(await login(from(nextIp()), ghost, `Guess-${i}-Aa1`));
    expect(statuses).toEqual([401, 401, 401, 429]);
  });

  it('per IP: one address spraying different accounts is refused after the limit, then even for a valid account; another IP still signs in', async () => {
    const ip = nextIp();
    const statuses: number[] = [];
    for (let i = 0; i < LIMITS.RATE_LOGIN_PER_IP; i++) statuses.push(await login(from(ip), uniqueEmail('spray'), 'Spray-Pass-1'));
    expect(statuses).toEqual(Array(LIMITS.RATE_LOGIN_PER_IP).fill(401));
    const real = await makeUser(rig.db);
    expect(await login(from(ip), real.email, PASSWORD)).toBe(429);
    expect(await login(from(nextIp()), real.email, PASSWORD)).toBe(303);
  });
});

describe('get-a-password and sign-up limits', () => {
  it('per account: links for one address stop after the limit whatever the IP, and only that many mails reach the relay', async () => {
    const victim = await makeUser(rig.db);
    const statuses: number[] = [];
    for (let i = 0; i <= LIMITS.RATE_PASSWORD_PER_ACCOUNT + 1; i++) statuses.push(await askForLink(from(nextIp()), victim.email));
    expect(statuses).toEqual([200, 200, 429, 429]);
    await settle([rig]);
    expect(rig.sink.received.filter(toAddress(victim.email))).toHaveLength(LIMITS.RATE_PASSWORD_PER_ACCOUNT);
  });

  it('per IP: one address asking for many accounts is refused after the limit, and /signup shares the same budget', async () => {
    const ip = nextIp();
    const statuses: number[] = [];
    for (let i = 0; i < LIMITS.RATE_PASSWORD_PER_IP; i++) statuses.push(await askForLink(from(ip), uniqueEmail('bulk')));
    expect(statuses).toEqual(Array(LIMITS.RATE_PASSWORD_PER_IP).fill(200));
    expect(await askForLink(from(ip), uniqueEmail('bulk'))).toBe(429);
    const signup = from(ip);
    await signup.get('/signup');
    const email = uniqueEmail('signup');
    expect((await signup.post('/signup', { name: 'Bulk Bot', email })).status).toBe(429);
    expect(await rig.db.selectFrom('users').select('id').where('email', '=', email).execute()).toEqual([]);
  });
});

describe('the client IP cannot be chosen by the client', () => {
  it('without TRUST_PROXY, rotating X-Forwarded-For does not escape the per-IP sign-in limit', async () => {
    const statuses: number[] = [];
    for (let i = 0; i <= LIMITS.RATE_LOGIN_PER_IP; i++)
      statuses.push(await login(from(nextIp(), direct.base), uniqueEmail('rotate'), 'Rotate-Pass-1'));
    expect(statuses.at(-1)).toBe(429);
  });

  it('with TRUST_PROXY, fake hops prepended to X-Forwarded-For do not escape it: only the right-most hop counts', async () => {
    const proxySeen = nextIp();
    const statuses: number[] = [];
    for (let i = 0; i <= LIMITS.RATE_LOGIN_PER_IP; i++)
      statuses.push(await login(from(`${nextIp()}, ${proxySeen}`), uniqueEmail('hops'), 'Hops-Pass-1'));
    expect(statuses).toEqual([...Array<number>(LIMITS.RATE_LOGIN_PER_IP).fill(401), 429]);
  });
});
