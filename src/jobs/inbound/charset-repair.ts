import {
  decodeBytes,
  decodeMixedUtf8,
  detectCharset,
  has8bit,
  isUtf8,
  knownCharset,
  labelFits,
  normalizeLabel,
  wordRuns,
  type WordRun,
} from './charset.js';

/**
 * The pre-processing step before mailparser: rewrites only what mailparser
 * would misread, and leaves every other byte alone.
 *
 * - Header fields with raw 8-bit bytes that are not UTF-8 (raw GBK or
 *   Shift_JIS subjects, names, filenames) are transcoded to UTF-8, which
 *   mailparser reads as RFC 6532 headers.
 * - Encoded words whose bytes do not fit their label (an "ISO-2022-JP" word
 *   holding Shift_JIS, a "UTF-8" word holding GBK) become UTF-8 words.
 * - Text body parts whose charset is missing, us-ascii, unknown or wrong for
 *   their bytes are relabelled with the detected charset; mailparser then
 *   decodes them itself. Their bytes are not touched, except for a part
 *   that is mostly UTF-8 with stray Windows-1252 bytes: no single charset
 *   reads it, so it is re-encoded as UTF-8 (base64).
 *
 * All suspect header bytes of a message are detected together: one client
 * wrote them, and a subject plus a name is a far better sample than either.
 * Attachments (including message/rfc822) are never rewritten.
 */

const MAX_DEPTH = 20;
const MAX_PARTS = 500;

interface Field {
  /** Byte offsets of the whole field (all its lines, with line ends) in the message. */
  start: number;
  end: number;
  name: string;
  /** Unfolded value (latin1 view; only ASCII parts are interpreted). */
  value: string;
}

interface Part {
  headerStart: number;
  /** Where the blank line that ends the header block starts (or the part end when there is none). */
  headerEnd: number;
  fields: Field[];
  /** New charset label for this text part's body, when its own does not fit. */
  relabel: string | null;
  /** A mixed UTF-8/Windows-1252 body, re-encoded: its UTF-8 bytes replace [bodyStart, bodyEnd) as base64. */
  transcoded: Buffer | null;
  bodyStart: number;
  bodyEnd: number;
}

const nl = 0x0a;
/** Fields whose parameters may carry RFC 2231 file names. */
const PARAM_FIELDS = new Set(['content-type', 'content-disposition']);

function lineEnd(raw: Buffer, from: number, limit: number): number {
  const i = raw.indexOf(nl, from);
  return i === -1 || i >= limit ? limit : i + 1;
}

function readHeaders(raw: Buffer, start: number, end: number): { fields: Field[]; headerEnd: number; bodyStart: number } {
  const fields: Field[] = [];
  let pos = start;
  while (pos < end) {
    const next = lineEnd(raw, pos, end);
    const first = raw[pos]!;
    // A blank line ends the block.
    if (first === nl || (first === 0x0d && raw[pos + 1] === nl)) return { fields, headerEnd: pos, bodyStart: next };
    const last = fields[fields.length - 1];
    if ((first === 0x20 || first === 0x09) && last) {
      last.end = next;
      last.value += ` ${raw.toString('latin1', pos, next).trim()}`;
    } else {
      const line = raw.toString('latin1', pos, next);
      const colon = line.indexOf(':');
      fields.push({
        start: pos,
        end: next,
        name: colon > 0 ? line.slice(0, colon).trim().toLowerCase() : '',
        value: colon > 0 ? line.slice(colon + 1).trim() : '',
      });
    }
    pos = next;
  }
  return { fields, headerEnd: end, bodyStart: end };
}

/** `; name=value` parameters of a structured header (quoted or not; RFC 2231 continuations are left to mailparser). */
function param(value: string, name: string): string | null {
  const re = /;\s*([\w*.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)/g;
  for (const m of value.matchAll(re)) if (m[1]!.toLowerCase() === name) return m[2]!.replace(/^"|"$/g, '');
  return null;
}

function decodeTransfer(body: Buffer, cte: string): Buffer {
  if (cte === 'base64') return Buffer.from(body.toString('latin1').replace(/[^A-Za-z0-9+/]/g, ''), 'base64');
  if (cte === 'quoted-printable') {
    const text = body
      .toString('latin1')
      .replace(/=\r?\n/g, '')
      .replace(/=([0-9A-Fa-f]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)));
    return Buffer.from(text, 'latin1');
  }
  return body;
}

const META_CHARSET = /<meta[^>]{0,300}?charset\s*=\s*["']?([\w.:-]{1,40})/i;

/** How a text part should be read when its own label does not fit its bytes (null: as labelled). */
function bodyRepair(
  raw: Buffer,
  fields: Field[],
  bodyStart: number,
  end: number,
  type: string,
  label: string,
): { charset: string; transcoded: Buffer | null } | null {
  const cte = (fields.findLast((f) => f.name === 'content-transfer-encoding')?.value ?? '').toLowerCase().trim();
  const bytes = decodeTransfer(raw.subarray(bodyStart, end), cte);
  if (labelFits(bytes, label)) return null;
  if (type === 'text/html' && label === '') {
    const meta = normalizeLabel(META_CHARSET.exec(bytes.toString('latin1', 0, 4096))?.[1]);
    if (meta && knownCharset(meta) && labelFits(bytes, meta)) return { charset: meta, transcoded: null };
  }
  const mixed = decodeMixedUtf8(bytes);
  if (mixed !== null) return { charset: 'utf-8', transcoded: Buffer.from(mixed, 'utf8') };
  const detected = detectCharset(bytes);
  return detected === label ? null : { charset: detected, transcoded: null };
}

function walk(raw: Buffer, start: number, end: number, depth: number, parts: Part[], parentType: string): void {
  if (parts.length >= MAX_PARTS) return;
  const { fields, headerEnd, bodyStart } = readHeaders(raw, start, end);
  const part: Part = { headerStart: start, headerEnd, fields, relabel: null, transcoded: null, bodyStart, bodyEnd: end };
  parts.push(part);
  const ctField = fields.findLast((f) => f.name === 'content-type');
  const contentType = ctField?.value ?? (parentType === 'multipart/digest' ? 'message/rfc822' : 'text/plain');
  const type = contentType.split(';')[0]!.trim().toLowerCase();
  const disposition = (fields.findLast((f) => f.name === 'content-disposition')?.value ?? '').toLowerCase();

  if (type.startsWith('multipart/')) {
    const boundary = param(contentType, 'boundary');
    if (!boundary || depth >= MAX_DEPTH) return;
    const delimiter = Buffer.from(`--${boundary}`, 'latin1');
    let cursor = bodyStart;
    let childStart = -1;
    for (;;) {
      const at = raw.indexOf(delimiter, cursor);
      if (at === -1 || at >= end) break;
      cursor = at + delimiter.length;
      if (at !== bodyStart && raw[at - 1] !== nl) continue;
      // "--b" must not match the line "--b2" or "--b--x" of a nested part: only whitespace or the line end may follow (after "--" when closing).
      const rest = raw[raw[cursor] === 0x2d && raw[cursor + 1] === 0x2d ? cursor + 2 : cursor];
      if (rest !== undefined && rest !== 0x0d && rest !== nl && rest !== 0x20 && rest !== 0x09) continue;
      // The line break before a delimiter belongs to the delimiter.
      if (childStart !== -1) walk(raw, childStart, at - (raw[at - 2] === 0x0d ? 2 : 1), depth + 1, parts, type);
      if (raw[cursor] === 0x2d && raw[cursor + 1] === 0x2d) return;
      childStart = lineEnd(raw, cursor, end);
    }
    return;
  }
  if ((type === 'text/plain' || type === 'text/html') && !disposition.startsWith('attachment')) {
    const repair = bodyRepair(raw, fields, bodyStart, end, type, normalizeLabel(param(contentType, 'charset')));
    part.relabel = repair?.charset ?? null;
    part.transcoded = repair?.transcoded ?? null;
  }
}

/** One RFC 2231 extended parameter (`filename*=charset'lang'%XX…`, possibly in `*0*`, `*1` sections). */
interface ExtendedParam {
  label: string;
  bytes: Buffer;
  /** [start, end) of each section in the field text, the first one being where the repaired parameter goes. */
  ranges: [number, number][];
}

const EXTENDED = /;\s*([\w.-]+)\*(\d+)?(\*)?\s*=\s*("[^"]*"|[^;\s]*)/g;

function extendedParams(text: string): ExtendedParam[] {
  const byName = new Map<string, { section: number; encoded: boolean; value: string; range: [number, number] }[]>();
  for (const m of text.matchAll(EXTENDED)) {
    const name = m[1]!.toLowerCase();
    const list = byName.get(name) ?? [];
    list.push({
      section: Number(m[2] ?? 0),
      encoded: m[2] === undefined || m[3] === '*',
      value: m[4]!.replace(/^"|"$/g, ''),
      range: [m.index, m.index + m[0].length],
    });
    byName.set(name, list);
  }
  return [...byName.values()].map((sections) => {
    sections.sort((a, b) => a.section - b.section);
    let label = '';
    const chunks = sections.map((sec, i) => {
      let value = sec.value;
      if (i === 0 && sec.encoded) {
        const parts = value.split("'");
        if (parts.length >= 3) {
          label = normalizeLabel(parts[0]);
          value = parts.slice(2).join("'");
        }
      }
      return sec.encoded
        ? Buffer.from(
            value.replace(/%([0-9A-Fa-f]{2})/g, (_x, h: string) => String.fromCharCode(parseInt(h, 16))),
            'latin1',
          )
        : Buffer.from(value, 'latin1');
    });
    return { label, bytes: Buffer.concat(chunks), ranges: sections.map((sec) => sec.range).sort((a, b) => a[0] - b[0]) };
  });
}

const fits = (label: string, bytes: Buffer) => labelFits(bytes, label) || (!knownCharset(label) && !has8bit(bytes) && label !== '');

/** Extended parameters whose bytes do not fit their label, rewritten as one UTF-8 parameter. */
function fixExtendedParams(text: string, decode: (bytes: Buffer) => string): string {
  const edits: { range: [number, number]; replacement: string }[] = [];
  for (const p of extendedParams(text)) {
    if (fits(p.label, p.bytes)) continue;
    const name = /;\s*([\w.-]+)\*/.exec(text.slice(p.ranges[0]![0]))![1]!;
    const value = encodeURIComponent(decode(p.bytes)).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
    p.ranges.forEach((range, i) => edits.push({ range, replacement: i === 0 ? `; ${name}*=UTF-8''${value}` : '' }));
  }
  if (edits.length === 0) return text;
  // One pass over the text: splicing edit by edit would be quadratic in a field with thousands of sections.
  edits.sort((a, b) => a.range[0] - b.range[0]);
  const pieces: string[] = [];
  let last = 0;
  for (const e of edits) {
    pieces.push(text.slice(last, e.range[0]), e.replacement);
    last = e.range[1];
  }
  pieces.push(text.slice(last));
  return pieces.join('');
}

const misfit = (run: WordRun) => !labelFits(run.bytes, run.label) && (knownCharset(run.label) || has8bit(run.bytes));

/** The field's text with mislabelled encoded-word runs replaced by UTF-8 words. */
function fixWords(text: string, decode: (bytes: Buffer) => string): string {
  let out = '';
  let last = 0;
  for (const run of wordRuns(text)) {
    if (!misfit(run)) continue;
    out += `${text.slice(last, run.start)}=?UTF-8?B?${Buffer.from(decode(run.bytes), 'utf8').toString('base64')}?=`;
    last = run.end;
  }
  return last === 0 ? text : out + text.slice(last);
}

function setCharset(fieldText: string, charset: string): string {
  const withParam = /(;\s*charset\s*=\s*)("[^"]*"|[^;\s]*)/i;
  if (withParam.test(fieldText)) return fieldText.replace(withParam, `$1${charset}`);
  const eol = /\r?\n$/.exec(fieldText)?.[0] ?? '';
  return `${fieldText.slice(0, fieldText.length - eol.length)}; charset=${charset}${eol}`;
}

/** The message with misread charsets repaired (see the module comment); the same Buffer when nothing needed it. */
export function repairCharsets(raw: Buffer): Buffer {
  const parts: Part[] = [];
  walk(raw, 0, raw.length, 0, parts, '');

  // One detection over every suspect header byte of the message.
  const suspects: Buffer[] = [];
  for (const p of parts) {
    for (const f of p.fields) {
      const bytes = raw.subarray(f.start, f.end);
      if (has8bit(bytes) && !isUtf8(bytes)) suspects.push(bytes);
      for (const run of wordRuns(f.value)) if (misfit(run)) suspects.push(run.bytes);
      if (PARAM_FIELDS.has(f.name)) for (const p of extendedParams(f.value)) if (!fits(p.label, p.bytes)) suspects.push(p.bytes);
    }
  }
  if (suspects.length === 0 && !parts.some((p) => p.relabel)) return raw;
  const headerCharset = suspects.length ? detectCharset(Buffer.concat(suspects.flatMap((b) => [b, Buffer.from(' ')]))) : 'utf-8';
  const decode = (bytes: Buffer) => {
    const text = decodeBytes(bytes, headerCharset);
    return text.includes('\ufffd') ? decodeBytes(bytes, detectCharset(bytes)) : text;
  };

  const out: Buffer[] = [];
  let copied = 0;
  for (const p of parts) {
    const ct = p.fields.findLast((f) => f.name === 'content-type');
    const cte = p.fields.findLast((f) => f.name === 'content-transfer-encoding');
    const eol = raw[p.headerEnd - 2] === 0x0d ? '\r\n' : '\n';
    for (const f of p.fields) {
      if (p.transcoded && f === cte) {
        out.push(raw.subarray(copied, f.start), Buffer.from(`Content-Transfer-Encoding: base64${eol}`, 'latin1'));
        copied = f.end;
        continue;
      }
      const bytes = raw.subarray(f.start, f.end);
      const original = isUtf8(bytes) ? bytes.toString('utf8') : decode(bytes);
      let text = fixWords(original, decode);
      if (PARAM_FIELDS.has(f.name)) text = fixExtendedParams(text, decode);
      if (p.relabel && f === ct) text = setCharset(text, p.relabel);
      if (text === original && isUtf8(bytes)) continue;
      out.push(raw.subarray(copied, f.start), Buffer.from(text, 'utf8'));
      copied = f.end;
    }
    const added = [
      p.relabel && !ct ? `Content-Type: text/plain; charset=${p.relabel}${eol}` : '',
      p.transcoded && !cte ? `Content-Transfer-Encoding: base64${eol}` : '',
    ].join('');
    if (added) {
      out.push(raw.subarray(copied, p.headerEnd), Buffer.from(added, 'latin1'));
      copied = p.headerEnd;
    }
    if (p.transcoded) {
      const base64 = p.transcoded.toString('base64').replace(/.{76}/g, `$&${eol}`);
      out.push(raw.subarray(copied, p.bodyStart), Buffer.from(`${base64}${eol}`, 'latin1'));
      copied = p.bodyEnd;
    }
  }
  if (out.length === 0) return raw;
  out.push(raw.subarray(copied));
  return Buffer.concat(out);
}
