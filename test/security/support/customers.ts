import { randomBytes } from 'node:crypto';
import type { Zone } from '../../outbound/support/dns-server.js';
import { makeDkimKey } from '../../outbound/support/staff-mail.js';

/**
 * The customer side of the mail world: customers write from shop.test, whose
 * DNS says SPF only 192.0.2.20 (never 127.0.0.1, where every test message
 * comes from), DKIM key k1 and DMARC p=none. So only a genuine shop.test
 * DKIM signature makes a shop.test From authenticated; anyone can still
 * write `From: carol@shop.test`, and that mail is unauthenticated.
 */
export const CUSTOMER_DOMAIN = 'shop.test';

export function customerWorld() {
  const key = makeDkimKey();
  const zone: Zone = {
    'shop.test': { TXT: ['v=spf1 ip4:192.0.2.20 -all'] },
    'k1._domainkey.shop.test': { TXT: [key.txt] },
    '_dmarc.shop.test': { TXT: ['v=DMARC1; p=none'] },
  };
  return {
    zone,
    /** What the customer's own mail provider adds: a genuine shop.test signature. */
    dkim: { domainName: 'shop.test', keySelector: 'k1', privateKey: key.privateKey },
  };
}

export const customerAddress = (name = 'carol') => `${name}-${randomBytes(3).toString('hex')}@${CUSTOMER_DOMAIN}`;
