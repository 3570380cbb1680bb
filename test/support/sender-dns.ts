import { startDnsServer, type TestDnsServer } from '../outbound/support/dns-server.js';

/**
 * A DNS server under which mail from these domains, sent from 127.0.0.1 (as
 * every test message is), passes SPF aligned with its From: the sender is
 * authenticated, so its mail may add CCs. Tests about CC handling use it;
 * tests about forged senders use their own zones (test/security/support).
 */
export async function trustedSenderDns(domains: string[]): Promise<TestDnsServer> {
  return startDnsServer(Object.fromEntries(domains.map((d) => [d, { TXT: ['v=spf1 ip4:127.0.0.1 -all'] }])));
}
