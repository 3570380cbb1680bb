import chardet from 'chardet';
import Encoding from 'encoding-japanese';
import iconv from 'iconv-lite';

/**
 * Reading bytes whose charset is missing or wrong. Real mail has raw GBK
 * and Shift_JIS in headers, encoded words labelled ISO-2022-JP that hold
 * Shift_JIS, "us-ascii" bodies with Windows-1252 bytes, and bodies without
 * any charset. Rule: a label is trusted while it decodes the bytes
 * cleanly; when it does not (or is missing or unknown), strict UTF-8 is
 * tried, then detection. Japanese is first-class: encoding-japanese decides
 * between Shift_JIS/CP932, EUC-JP and ISO-2022-JP, and wins ambiguous
 * short samples.
 */

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

export function isUtf8(bytes: Uint8Array): boolean {
  try {
    strictUtf8.decode(bytes);
    return true;
  } catch {
    return false;
  }
}

/** ISO-2022-JP's switch into JIS X 0208 / 0212 or JIS-Roman: 7-bit Japanese that a UTF-8 reading garbles. */
// eslint-disable-next-line no-control-regex -- ESC is how ISO-2022-JP switches character sets
const JIS_ESCAPE = /\x1b(?:\$[@B]|\$\(D|\(J)/;
export function hasJisEscape(bytes: Uint8Array): boolean {
  return bytes.includes(0x1b) && JIS_ESCAPE.test(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1'));
}

export function has8bit(bytes: Uint8Array): boolean {
  for (const b of bytes) if (b >= 0x80) return true;
  return false;
}

/** A charset label as written ("Shift_JIS", "\"utf-8\"", "iso-2022-jp*ja") → a lower-case name, '' when absent. */
export function normalizeLabel(label: string | null | undefined): string {
  return (label ?? '')
    .trim()
    .replace(/^["']|["']$/g, '')
    .replace(/\*.*$/, '')
    .toLowerCase();
}

const JIS = new Set(['iso-2022-jp', 'iso-2022-jp-1', 'iso-2022-jp-2', 'iso-2022-jp-3', 'csiso2022jp', 'jis']);
const UTF8 = new Set(['utf-8', 'utf8', 'unicode-1-1-utf-8']);
const ASCII = new Set(['us-ascii', 'ascii', 'ansi_x3.4-1968', 'iso646-us', '646', 'us']);

/** Whether we (and mailparser, which uses the same libraries) can decode this label at all. */
export function knownCharset(label: string): boolean {
  return JIS.has(label) || iconv.encodingExists(label);
}

/** Decodes bytes with a charset we know: ISO-2022-JP through encoding-japanese, the rest through iconv-lite. */
export function decodeBytes(bytes: Uint8Array, charset: string): string {
  if (JIS.has(charset)) return Encoding.codeToString(Encoding.convert(bytes, { to: 'UNICODE', from: 'JIS' }));
  return iconv.decode(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), charset);
}

/**
 * Whether the label reads these bytes without damage. Missing, us-ascii and
 * UTF-8 mean "strict UTF-8" (8-bit bytes under us-ascii are a lie either way);
 * ISO-2022-JP is 7-bit, so any 8-bit byte means it is something else.
 */
export function labelFits(bytes: Uint8Array, label: string): boolean {
  if (!has8bit(bytes)) return JIS.has(label) || !(label === '' || UTF8.has(label) || ASCII.has(label)) || !hasJisEscape(bytes);
  if (label === '' || UTF8.has(label)) return isUtf8(bytes);
  if (ASCII.has(label) || JIS.has(label) || !knownCharset(label)) return false;
  return !decodeBytes(bytes, label).includes('\ufffd');
}

/** chardet's and encoding-japanese's names → iconv-lite's. Latin-1 is read as Windows-1252, as browsers do. */
const CANONICAL: Record<string, string> = {
  SJIS: 'cp932',
  EUCJP: 'euc-jp',
  JIS: 'iso-2022-jp',
  Shift_JIS: 'cp932',
  'EUC-JP': 'euc-jp',
  'ISO-2022-JP': 'iso-2022-jp',
  GB18030: 'gb18030',
  Big5: 'big5',
  'EUC-KR': 'euc-kr',
  'ISO-8859-1': 'windows-1252',
};
const canonical = (name: string) => CANONICAL[name] ?? name.toLowerCase();
const OTHER_MULTIBYTE = ['gb18030', 'big5', 'euc-kr'];

/** A decoding that reads like text: no replacement characters, no C1 controls. */
function readsClean(bytes: Uint8Array, charset: string): boolean {
  if (!knownCharset(charset)) return false;
  return !/[\ufffd\u0080-\u009f]/.test(decodeBytes(bytes, charset));
}

/**
 * Japanese that reads like Japanese: some kana (nearly every sentence has
 * them), or a few characters without half-width katakana (a name in kanji).
 * GBK or Big5 read as Shift_JIS/EUC-JP gives kanji-only or half-width noise.
 */
const kana = (text: string) => text.match(/[\u3040-\u30ff]/g)?.length ?? 0;

function plausibleJapanese(text: string): boolean {
  if (/[\u3040-\u30ff]/.test(text)) return true;
  if (/[\uff61-\uff9f]/.test(text)) return false;
  return (text.match(/[\u4e00-\u9fff]/g)?.length ?? 0) < 6;
}

/**
 * The bytes that say something about the charset: the tokens that contain
 * 8-bit bytes (delimiters are below 0x40, so never a trail byte of a
 * double-byte charset), at most 4 KB. A large HTML body with one line of
 * Chinese would otherwise drown the detector in ASCII markup.
 */
function detectionSample(bytes: Uint8Array): Buffer {
  const out: number[] = [];
  let tokenStart = 0;
  let eightBit = false;
  const isDelimiter = (b: number) => b <= 0x20 || b === 0x22 || b === 0x27 || b === 0x3c || b === 0x3d || b === 0x3e;
  for (let i = 0; i <= bytes.length && out.length < 4096; i++) {
    const b = i < bytes.length ? bytes[i]! : 0x20;
    if (!isDelimiter(b)) {
      if (b >= 0x80) eightBit = true;
      continue;
    }
    if (eightBit) for (let k = tokenStart; k < i; k++) out.push(bytes[k]!);
    if (eightBit) out.push(0x20);
    tokenStart = i + 1;
    eightBit = false;
  }
  return Buffer.from(out);
}

function longestRun8bit(bytes: Uint8Array): number {
  let longest = 0;
  let run = 0;
  for (const b of bytes) {
    run = b >= 0x80 ? run + 1 : 0;
    if (run > longest) longest = run;
  }
  return longest;
}

/**
 * The charset these bytes most likely are. A confident chardet verdict on
 * the sample wins (refined by encoding-japanese between Shift_JIS and
 * EUC-JP). Short samples (a subject, a name) are ambiguous: a Japanese
 * reading that reads like Japanese first, then the Chinese and Korean
 * charsets as chardet ranks them, then single-byte ones; the first that
 * reads the whole input clean wins. Never fails: Windows-1252 reads any byte.
 */
export function detectCharset(bytes: Uint8Array): string {
  if (!has8bit(bytes)) return hasJisEscape(bytes) ? 'iso-2022-jp' : 'utf-8';
  if (isUtf8(bytes)) return 'utf-8';
  const sample = detectionSample(bytes);
  const ranked = chardet.analyse(sample).map((r) => ({ name: canonical(r.name), confidence: r.confidence }));
  const japanese = Encoding.detect(sample);
  const jaGuess = japanese === 'SJIS' || japanese === 'EUCJP' ? canonical(japanese) : null;
  const top = ranked[0];
  if (top && top.confidence >= 50) {
    if ((top.name === 'cp932' || top.name === 'euc-jp') && jaGuess && readsClean(bytes, jaGuess)) return jaGuess;
    // EUC-JP and GBK share their byte ranges: a Japanese reading with more kana is the better one.
    if (
      jaGuess &&
      top.name !== jaGuess &&
      readsClean(bytes, jaGuess) &&
      kana(decodeBytes(sample, jaGuess)) > kana(decodeBytes(sample, top.name))
    )
      return jaGuess;
    if (readsClean(bytes, top.name)) return top.name;
  }
  // Every 8-bit byte alone between ASCII ("Hofj\xe4geralle", "Gr\xfc\xdfe"): Latin text in a
  // single-byte charset; double-byte text has runs of 8-bit bytes.
  if (longestRun8bit(sample) === 1)
    return readsClean(bytes, 'windows-1252')
      ? 'windows-1252'
      : (ranked.map((r) => r.name).find((c) => readsClean(bytes, c)) ?? 'windows-1252');
  const confidence = (name: string) => ranked.find((r) => r.name === name)?.confidence ?? 0;
  const japaneseFirst = [...(jaGuess ? [jaGuess] : []), 'cp932', 'euc-jp'].filter((c) => plausibleJapanese(decodeBytes(sample, c)));
  const ordered = [
    ...japaneseFirst,
    // Ties (short samples score alike) keep OTHER_MULTIBYTE's order: GBK is the most common of them in mail.
    ...OTHER_MULTIBYTE.toSorted((a, b) => confidence(b) - confidence(a)),
    ...ranked.map((r) => r.name),
  ];
  return ordered.find((c) => readsClean(bytes, c)) ?? 'windows-1252';
}

/** The text of bytes labelled `label`: the label while it fits, else detection. */
export function decodeWithFallback(bytes: Uint8Array, label: string): { text: string; charset: string } {
  const charset = labelFits(bytes, label) ? label || 'utf-8' : detectCharset(bytes);
  return { text: decodeBytes(bytes, ASCII.has(charset) ? 'utf-8' : charset), charset };
}

const ENCODED_WORD = /=\?([^?\s]{1,64})\?([bBqQ])\?([^?\s]*)\?=/g;

export interface WordRun {
  start: number;
  end: number;
  label: string;
  bytes: Buffer;
}

/** Runs of adjacent encoded words with one label (their bytes joined: a character may span two words). */
export function wordRuns(text: string): WordRun[] {
  const runs: WordRun[] = [];
  const chunks: Buffer[][] = [];
  for (const m of text.matchAll(ENCODED_WORD)) {
    const label = normalizeLabel(m[1]);
    const payload = m[3]!;
    const bytes =
      m[2]!.toLowerCase() === 'b'
        ? Buffer.from(payload, 'base64')
        : Buffer.from(
            payload.replace(/_/g, ' ').replace(/=([0-9A-Fa-f]{2})/g, (_x, h: string) => String.fromCharCode(parseInt(h, 16))),
            'latin1',
          );
    const prev = runs[runs.length - 1];
    if (prev && prev.label === label && text.slice(prev.end, m.index).trim() === '') {
      prev.end = m.index + m[0].length;
      chunks[chunks.length - 1]!.push(bytes);
    } else {
      runs.push({ start: m.index, end: m.index + m[0].length, label, bytes });
      chunks.push([bytes]);
    }
  }
  // Joined once per run: joining word by word is quadratic in a header of thousands of words.
  runs.forEach((run, i) => (run.bytes = chunks[i]!.length === 1 ? chunks[i]![0]! : Buffer.concat(chunks[i]!)));
  return runs;
}

/** Encoded words decoded, each run by its label while that fits its bytes, else by detection. */
export function decodeHeaderWords(text: string): string {
  let out = '';
  let last = 0;
  for (const run of wordRuns(text)) {
    out += text.slice(last, run.start) + decodeWithFallback(run.bytes, knownCharset(run.label) ? run.label : '').text;
    last = run.end;
  }
  return out + text.slice(last);
}

/** Windows-1252's reading of the bytes 0x80–0xFF (a constant table); its five unassigned bytes read as C1 controls, as in browsers. */
const CP1252_HIGH = [...iconv.decode(Buffer.from(Array.from({ length: 128 }, (_v, i) => 0x80 + i)), 'windows-1252')].map((c, i) =>
  c === '\ufffd' ? String.fromCharCode(0x80 + i) : c,
);

/** Length of a valid UTF-8 sequence starting at i (1 for ASCII), or 0 when the bytes there are not one. */
function utf8SequenceAt(bytes: Uint8Array, i: number): number {
  const b = bytes[i]!;
  if (b < 0x80) return 1;
  const len = b >= 0xc2 && b <= 0xdf ? 2 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4 : 0;
  if (len === 0 || i + len > bytes.length) return 0;
  const second = bytes[i + 1]!;
  // Overlong forms, surrogates and code points above U+10FFFF are not UTF-8.
  if ((b === 0xe0 && second < 0xa0) || (b === 0xed && second > 0x9f) || (b === 0xf0 && second < 0x90) || (b === 0xf4 && second > 0x8f))
    return 0;
  for (let k = 1; k < len; k++) if ((bytes[i + k]! & 0xc0) !== 0x80) return 0;
  return len;
}

/**
 * Text that is mostly UTF-8 with some Windows-1252 bytes mixed in (a client
 * that pasted Latin-1 into a UTF-8 mail): each valid UTF-8 sequence read as
 * UTF-8, each other byte as Windows-1252. Null when valid multi-byte
 * sequences are not the clear majority of the 8-bit bytes: then it is
 * another charset whose bytes merely happen to form some UTF-8 (GBK often does).
 */
export function decodeMixedUtf8(bytes: Uint8Array): string | null {
  let validBytes = 0;
  let invalidBytes = 0;
  const pieces: string[] = [];
  let runStart = 0;
  let i = 0;
  const flush = (until: number) => {
    if (until > runStart) pieces.push(Buffer.from(bytes.buffer, bytes.byteOffset + runStart, until - runStart).toString('utf8'));
  };
  while (i < bytes.length) {
    const len = utf8SequenceAt(bytes, i);
    if (len > 0) {
      if (len > 1) validBytes += len;
      i += len;
      continue;
    }
    flush(i);
    pieces.push(CP1252_HIGH[bytes[i]! - 0x80]!);
    invalidBytes++;
    i++;
    runStart = i;
  }
  flush(i);
  return validBytes > 0 && invalidBytes > 0 && validBytes >= invalidBytes * 2 ? pieces.join('') : null;
}
