import { isIPv4, isIPv6 } from 'node:net';

/**
 * The key per-client limits count under. An IPv4 client is its address; an
 * IPv6 client is its /64, because a single host usually owns a whole /64 and
 * can rotate through it freely (per-address limits would never trip).
 * IPv4-mapped IPv6 (`::ffff:a.b.c.d`, as dual-stack sockets report IPv4) is
 * the IPv4 address.
 */
export function ipKey(address: string): string {
  const a = address
    .trim()
    .toLowerCase()
    .replace(/^\[|\]$/g, '')
    .replace(/%.*$/, '');
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (mapped && isIPv4(mapped[1]!)) return mapped[1]!;
  if (!isIPv6(a)) return a;
  return `${expandIPv6(a).slice(0, 4).join(':')}::/64`;
}

/** The eight hextets of an IPv6 address (an embedded IPv4 tail counts as two). */
function expandIPv6(a: string): string[] {
  const [head, tail = null] = a.split('::') as [string, string?];
  const part = (s: string | null) => {
    if (!s) return [];
    return s.split(':').flatMap((h) => {
      if (!h.includes('.')) return [h];
      const [b0, b1, b2, b3] = h.split('.').map(Number) as [number, number, number, number];
      return [((b0 << 8) | b1).toString(16), ((b2 << 8) | b3).toString(16)];
    });
  };
  const left = part(head);
  const right = part(tail);
  const fill = tail === null ? [] : Array(8 - left.length - right.length).fill('0');
  return [...left, ...fill, ...right].map((h) => h.replace(/^0+(?=.)/, ''));
}
