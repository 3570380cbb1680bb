import { createSocket, type Socket } from 'node:dgram';
import * as dnsPacket from 'dns-packet';

/**
 * A tiny authoritative DNS server over UDP on 127.0.0.1 that the test
 * controls: replyline points DNS_SERVERS at it, so SPF, DKIM and DMARC are
 * checked through the same resolver path as in production.
 * Unknown names answer NXDOMAIN; known names without the asked type, NODATA.
 */
export interface Zone {
  [name: string]: { TXT?: string[]; A?: string[]; MX?: Array<{ preference: number; exchange: string }> };
}

export interface TestDnsServer {
  port: number;
  server: string;
  zone: Zone;
  queries: string[];
  stop(): Promise<void>;
}

const chunk = (s: string) => s.match(/.{1,255}/g) ?? [''];

export async function startDnsServer(zone: Zone = {}): Promise<TestDnsServer> {
  const socket: Socket = createSocket('udp4');
  const queries: string[] = [];
  const srv = { zone, queries } as TestDnsServer;
  socket.on('message', (msg, rinfo) => {
    let query: dnsPacket.DecodedPacket;
    try {
      query = dnsPacket.decode(msg);
    } catch {
      return;
    }
    const q = query.questions?.[0];
    if (!q) return;
    const name = q.name.toLowerCase().replace(/\.$/, '');
    queries.push(`${q.type} ${name}`);
    const entry = srv.zone[name];
    const answers: dnsPacket.Answer[] = [];
    if (entry && q.type === 'TXT') for (const t of entry.TXT ?? []) answers.push({ type: 'TXT', name: q.name, ttl: 1, data: chunk(t) });
    if (entry && q.type === 'A') for (const a of entry.A ?? []) answers.push({ type: 'A', name: q.name, ttl: 1, data: a });
    if (entry && q.type === 'MX') for (const mx of entry.MX ?? []) answers.push({ type: 'MX', name: q.name, ttl: 1, data: mx });
    const rcode = entry ? 0 : 3; // NXDOMAIN for names we do not know
    const response = dnsPacket.encode({
      type: 'response',
      id: query.id,
      flags: dnsPacket.AUTHORITATIVE_ANSWER | dnsPacket.RECURSION_AVAILABLE | ((query.flags ?? 0) & dnsPacket.RECURSION_DESIRED) | rcode,
      questions: [q],
      answers,
    });
    socket.send(response, rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  srv.port = socket.address().port;
  srv.server = `127.0.0.1:${srv.port}`;
  srv.stop = () => new Promise<void>((resolve) => socket.close(() => resolve()));
  return srv;
}
