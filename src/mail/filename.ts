/**
 * File names come from the sender of a mail or an upload: RFC 2047/2231
 * decoding is mailparser's job, a form's name is the browser's; here, one
 * rule set makes either safe to store, list, put in a MIME header and offer
 * as a download name on any OS.
 */

const EXTENSIONS: Record<string, string> = {
  'application/pdf': 'pdf',
  'image/png': 'png',
  'image/jpeg': 'jpg',
  'image/gif': 'gif',
  'image/webp': 'webp',
  'text/plain': 'txt',
  'text/html': 'html',
  'text/calendar': 'ics',
  'message/rfc822': 'eml',
  'application/zip': 'zip',
};

const MAX_BYTES = 200;
const RESERVED = /^(con|prn|aux|nul|com\d|lpt\d)(\.|$)/i;

/** Truncates to at most `max` UTF-8 bytes without splitting a character. */
function truncateBytes(s: string, max: number): string {
  let out = '';
  let bytes = 0;
  for (const ch of s) {
    const n = Buffer.byteLength(ch);
    if (bytes + n > max) break;
    out += ch;
    bytes += n;
  }
  return out;
}

export function sanitizeFilename(name: string | undefined | null, contentType: string, index: number): string {
  let s = (name ?? '').normalize('NFC');
  // Path parts, control and bidi-override characters (a "gpj.exe" trick), reserved punctuation.
  s = s.replace(/^.*[/\\]/, '');
  // eslint-disable-next-line no-control-regex -- stripping control characters is the point
  s = s.replace(/[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]/g, '');
  s = s
    .replace(/[<>:"|?*]/g, '_')
    .replace(/\s+/g, ' ')
    .trim();
  s = s.replace(/^[.\s]+/, '').replace(/[.\s]+$/, '');
  if (RESERVED.test(s)) s = `_${s}`;
  if (s === '') {
    const ext = EXTENSIONS[contentType.toLowerCase()] ?? 'bin';
    return `attachment-${index}.${ext}`;
  }
  if (Buffer.byteLength(s) <= MAX_BYTES) return s;
  const dot = s.lastIndexOf('.');
  const ext = dot > 0 && s.length - dot <= 16 ? s.slice(dot) : '';
  return truncateBytes(s.slice(0, ext ? dot : s.length), MAX_BYTES - Buffer.byteLength(ext)) + ext;
}
