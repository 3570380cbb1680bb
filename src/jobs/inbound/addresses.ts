import type { AddressObject } from 'mailparser';
import { isValidEmail, normalizeEmail, type Mailbox } from '../../core/address.js';
import { decodeHeaderWords } from './charset.js';

/**
 * Mailboxes from address headers, checked against the header as written.
 * mailparser "repairs" what does not parse: `<power quadrant system@example.com>`
 * becomes the address system@example.com with the name "power quadrant", and
 * a nameless `"Company " <>` entry lends its name to the next mailbox. We
 * only keep an address that is literally written in the header (the whole
 * content of an angle bracket, or a bare token), so a reply can never go to
 * an address the sender did not write.
 */

/** An address as written: an angle bracket's content or a bare token, and the display phrase written before it. */
interface Written {
  address: string;
  /** Raw text between the previous mailbox's `>` and this `<`; null when no bracketed mailbox precedes it. */
  phrase: string | null;
}

/** Reads an address header value left to right (linear: one pass, no backtracking). */
export function writtenAddresses(raw: string): Written[] {
  const out: Written[] = [];
  let bare = '';
  let phraseStart = -1;
  let lastComma = -1;
  let quotedAddress: string | null = null;
  const flushQuoted = () => {
    if (quotedAddress) out.push({ address: quotedAddress, phrase: null });
    quotedAddress = null;
  };
  const flushBare = () => {
    for (const token of bare.split(/[\s,;:]+/)) if (token.includes('@')) out.push({ address: token, phrase: null });
    bare = '';
  };
  let i = 0;
  while (i < raw.length) {
    const c = raw[i]!;
    if (c === '"') {
      // A quoted string: a display name, or (`"a@example.com"` alone) the address itself, whole.
      const start = ++i;
      while (i < raw.length && raw[i] !== '"') i += raw[i] === '\\' ? 2 : 1;
      const quoted = raw.slice(start, i).trim();
      i++;
      // It is the address only when no `<address>` follows in the same entry.
      if (/^[^\s@]+@[^\s@]+$/.test(quoted)) quotedAddress = quoted;
      bare += ' ';
    } else if (c === '(') {
      let depth = 0;
      do {
        if (raw[i] === '(') depth++;
        else if (raw[i] === ')') depth--;
        else if (raw[i] === '\\') i++;
        i++;
      } while (i < raw.length && depth > 0);
      bare += ' ';
    } else if (c === '<') {
      const end = raw.indexOf('>', i + 1);
      if (end === -1) {
        bare += raw.slice(i + 1);
        break;
      }
      // Whatever sat between the previous `>` (or a later comma) and here is this mailbox's phrase.
      const phrase = phraseStart === -1 ? null : raw.slice(Math.max(phraseStart, lastComma + 1), i);
      quotedAddress = null;
      flushBare();
      // Comments are allowed around the parts of an address (`c@(host)public.example`); nothing else is removed.
      out.push({
        address: raw
          .slice(i + 1, end)
          .replace(/\([^()]*\)/g, '')
          .trim(),
        phrase,
      });
      i = end + 1;
      phraseStart = i;
    } else {
      if (c === ',') {
        lastComma = i;
        flushQuoted();
      }
      bare += c;
      i++;
    }
  }
  flushBare();
  flushQuoted();
  return out;
}

/** `"LTD"` or ` , =?utf-8?Q?Jos=C3=A9?= ` → the display name. */
function phraseToName(phrase: string): string {
  const text = phrase.replace(/^[\s,;]+|[\s,;]+$/g, '');
  const unquoted = /^"((?:[^"\\]|\\.)*)"$/.exec(text)?.[1]?.replace(/\\(.)/g, '$1') ?? text;
  return decodeHeaderWords(unquoted).trim();
}

const noNul = (s: string) => s.replace(/\0/g, '');
/**
 * mailparser's raw header lines are byte strings; raw 8-bit header bytes are
 * UTF-8 by the time mailparser sees them (charset-repair.ts transcodes the rest).
 */
const utf8View = (line: string) =>
  // eslint-disable-next-line no-control-regex -- "only code points up to U+00FF" includes the control range
  /[\u0080-\u00ff]/.test(line) && !/[^\u0000-\u00ff]/.test(line) ? Buffer.from(line, 'latin1').toString('utf8') : line;

/**
 * Valid mailboxes that are literally in the raw header values, with the name
 * that belongs to each (mailparser's, unless a bracketed mailbox precedes it
 * and mailparser may have merged that one's name in).
 */
export function checkedMailboxes(value: AddressObject | AddressObject[] | undefined, rawValues: readonly string[] | undefined): Mailbox[] {
  const written = (rawValues ?? []).map(utf8View).flatMap(writtenAddresses);
  const byAddress = new Map<string, Written>();
  for (const w of written) if (!byAddress.has(normalizeEmail(w.address))) byAddress.set(normalizeEmail(w.address), w);
  const out: Mailbox[] = [];
  const visit = (entries: AddressObject['value']) => {
    for (const e of entries) {
      if (e.group) visit(e.group);
      else if (e.address && isValidEmail(e.address)) {
        const w = byAddress.get(normalizeEmail(e.address));
        if (!w) continue;
        const name = w.phrase === null ? (e.name ?? '') : phraseToName(w.phrase);
        out.push({ address: normalizeEmail(e.address), name: noNul(name).replace(/\s+/g, ' ').trim().slice(0, 200) });
      }
    }
  };
  for (const v of Array.isArray(value) ? value : value ? [value] : []) visit(v.value);
  return out;
}

/** The first address as written (for the held listing): "power quadrant system@example.com", not mailparser's repair. */
export function firstWrittenAddress(rawValues: readonly string[] | undefined): string | null {
  for (const raw of rawValues ?? []) {
    const first = writtenAddresses(utf8View(raw)).find((w) => w.address !== '');
    if (first) return noNul(first.address).slice(0, 320);
  }
  return null;
}
