import EmailReplyParser from 'email-reply-parser';

/**
 * The new text of a plain-text reply: our own "reply above this line"
 * delimiter first (exact and cheap, and it works in every language we send),
 * then email-reply-parser for quoted history and signatures.
 */

export const REPLY_DELIMITER = '##- Please type your reply above this line -##';

// Any localised variant of the delimiter line: "##- … -##". Our templates
// print it in the mail language; a client may re-wrap or quote it ("> ##-").
// Only blanks and ">" before it, never "\s": "\s" also matches line breaks, so
// a body of "> " lines made every line start rescan the rest of the text
// (quadratic: 144 KB held a CPU core for 2.6 s). Linear now.
const DELIMITER_LINE = /^[> \t]*##-[^\r\n]{0,200}-##[ \t]*\r?$/m;

/** Text above our delimiter, or the whole text when there is none. */
export function cutAtDelimiter(text: string): { text: string; found: boolean } {
  const m = DELIMITER_LINE.exec(text);
  if (!m) return { text, found: false };
  let above = text.slice(0, m.index);
  // The client's own quote header ("On …, Support wrote:") sits right above our delimiter.
  above = above.replace(
    /\n[^\n]*\n?[^\n]*(wrote|schrieb|écrit|escribió|scritto|escreveu|schreef|skrev|napisał|написал|のメッセージ|書きました)[^\n]*:?\s*$/i,
    '\n',
  );
  above = above.replace(/\n[^\n]*<[^<>\s]+@[^<>\s]+>\s*:?\s*$/, '\n');
  return { text: above, found: true };
}

// Quote headers of Japanese mail clients that email-reply-parser does not know.
const JA_QUOTE_HEADER =
  /^\s*(?:\d{4}年\d{1,2}月\d{1,2}日.{0,60}<[^<>\s]+@[^<>\s]+>:?|.{0,80}さんは書きました[:：]?|.{0,80}wrote[:：]?)\s*$/;

/**
 * A quote header in a language or layout the parser does not know, possibly
 * wrapped over two lines ("02.04.2012 14:20 пользователь "b" <\nb@x.org> написал:"):
 * a date, an address, a trailing colon, and quoted lines right after it.
 */
function cutGenericHeader(text: string): string {
  const lines = text.split('\n');
  const looksLikeHeader = (s: string) => s.length <= 300 && /\d/.test(s) && /@/.test(s) && /:\s*$/.test(s);
  const quotedNext = (k: number) => {
    while (k < lines.length && lines[k]!.trim() === '') k++;
    return k < lines.length && /^\s*>/.test(lines[k]!);
  };
  for (let i = 1; i < lines.length; i++) {
    if (/^\s*>/.test(lines[i]!)) continue;
    if (looksLikeHeader(lines[i]!) && quotedNext(i + 1)) {
      // The header's first half wrapped onto the line above ("On …, Name <" / "address> wrote:").
      const above = lines[i - 1]!;
      const wrapped = /<\s*$/.test(above) || /^\s*(on|le|am|el|il|em|op|den)\s.*\d/i.test(above);
      return lines.slice(0, wrapped ? i - 1 : i).join('\n');
    }
    const joined = `${lines[i]} ${lines[i + 1] ?? ''}`;
    if (
      i + 1 < lines.length &&
      !/^\s*>/.test(lines[i + 1]!) &&
      !looksLikeHeader(lines[i + 1]!) &&
      looksLikeHeader(joined) &&
      quotedNext(i + 2)
    ) {
      return lines.slice(0, i).join('\n');
    }
  }
  return text;
}

/** Lines from the first Japanese quote header on are history; the parser would otherwise keep them. */
function cutJapaneseHeader(text: string): string {
  const lines = text.split('\n');
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (/[\u3040-\u30ff\u4e00-\u9fff]/.test(line) && JA_QUOTE_HEADER.test(line) && /^\s*>/.test(lines[i + 1] ?? lines[i + 2] ?? '')) {
      return lines.slice(0, i).join('\n');
    }
  }
  return text;
}

// Outlook's header block ("From: … / Sent: … / To: …"), also in bold (*From:*)
// and after a rule of underscores: everything from it on is the quoted mail.
const OUTLOOK_FROM = /^[*\s]*(from|von|de|van|da|от|差出人|发件人|寄件者)\s?[*]?[:：][*]?\s+\S/i;
const OUTLOOK_NEXT =
  /^[*\s]*(sent|date|to|subject|gesendet|an|betreff|envoyé|objet|отправлено|кому|тема|送信日時|日付|宛先|件名)\s?[*]?[:：]/i;

function cutOutlookHeader(text: string): string {
  const lines = text.split('\n');
  for (let i = 1; i < lines.length; i++) {
    if (!OUTLOOK_FROM.test(lines[i]!)) continue;
    if (!lines.slice(i + 1, i + 5).some((l) => OUTLOOK_NEXT.test(l))) continue;
    let start = i;
    // Take the separator line above it along ("-----", "_____", blank lines).
    while (start > 0 && /^\s*([-_=]{5,}\s*|)$/.test(lines[start - 1]!)) start--;
    return lines.slice(0, start).join('\n');
  }
  return text;
}

/**
 * Separator lines that major clients put above forwarded or quoted mail, in
 * English, German, French, Spanish, Japanese and Chinese: "-----Original
 * Message-----", "----- Original Nachricht ----", "-------- Message original
 * --------", "-----Mensaje original-----", "-----元のメッセージ-----",
 * "------------------ 原始邮件 ------------------", "Begin forwarded message:".
 * Checked one line at a time with a length cap, so no pattern can backtrack
 * across lines.
 */
const SEPARATOR_PHRASES =
  'original message|forwarded message|begin forwarded message|original nachricht|ursprüngliche nachricht|weitergeleitete nachricht|' +
  "message original|message d'origine|message transféré|mensaje original|mensaje reenviado|" +
  '元のメッセージ|転送メッセージ|転送されたメッセージ|オリジナルメッセージ|原始邮件|原始郵件|转发邮件|轉寄郵件';
const FORWARD_SEPARATOR = new RegExp(`^[>\\s]*[-_=*]*\\s?(?:${SEPARATOR_PHRASES})\\s?:?[-_=*\\s]*$`, 'i');
/** Quote headers: "On … wrote:", "Am … schrieb …:", "Le … a écrit :", "El … escribió:", "… さんは書きました:", "在 … 写道：". */
const QUOTE_HEADER = [
  /^\s*(?:on|am|le|el)\s.{1,250}(?:wrote|schrieb|écrit|escribió).{0,120}[:：]\s*$/i,
  /^.{1,250}さんは書きました\s?[:：]?\s*$/,
  /^\s*在.{1,250}写道\s?[:：]\s*$/,
];

export const isForwardSeparator = (line: string) => line.length <= 300 && FORWARD_SEPARATOR.test(line);
const isQuoteHeader = (line: string) => line.length <= 300 && QUOTE_HEADER.some((re) => re.test(line));

/**
 * For each line: is there new text below a quoted line further down (an
 * interleaved answer, which the reply parser keeps)? One backward pass.
 */
function interleavedBelow(lines: string[]): boolean[] {
  const out = new Array<boolean>(lines.length);
  let unquotedBelow = false;
  let interleaved = false;
  for (let k = lines.length - 1; k >= 0; k--) {
    out[k] = interleaved;
    if (/^\s*>/.test(lines[k]!)) interleaved ||= unquotedBelow;
    else if (lines[k]!.trim() !== '') unquotedBelow = true;
  }
  return out;
}

/**
 * Text above the first forward separator, or above the first quote header
 * that is not followed by an interleaved answer. Possibly nothing: a bare
 * forward, which the caller then shows whole.
 */
function cutForwardSeparator(text: string): string {
  const lines = text.split('\n');
  let interleaved: boolean[] | null = null;
  const at = lines.findIndex(
    (line, i) => isForwardSeparator(line) || (isQuoteHeader(line) && !(interleaved ??= interleavedBelow(lines))[i]),
  );
  return at === -1 ? text : lines.slice(0, at).join('\n');
}

// Lines longer than this are replaced by a short stand-in while the reply
// parser runs: its regexes backtrack quadratically on long lines (a 700 KB
// line of '>' takes minutes). The stand-in keeps the line's start, which is
// all the quote and signature rules look at.
const LONG_LINE = 512;
const STAND_IN = '\u2063';

function parseVisible(text: string): string {
  const long: string[] = [];
  const shortened = text
    .split('\n')
    .map((line) => {
      if (line.length <= LONG_LINE) return line;
      long.push(line);
      return `${line.slice(0, 64)}${STAND_IN}${long.length - 1}${STAND_IN}`;
    })
    .join('\n');
  const fragments = new EmailReplyParser().read(shortened).getFragments();
  const kept: string[] = [];
  let previousQuoteLine = -1;
  for (const f of fragments) {
    const content = f.getContent();
    const lastQuoteLine = previousQuoteLine;
    previousQuoteLine = f.isQuoted() ? (content.trimEnd().split('\n').pop() ?? '').length : -1;
    if (f.isHidden()) continue;
    // A single unquoted line right after a long quoted line is the quote's
    // own hard-wrapped tail (the client wrapped after adding "> "), not an answer.
    if (lastQuoteLine >= 60 && content.trim().split('\n').length === 1) continue;
    kept.push(content);
  }
  const restored = kept.join('\n').replace(/~*$/, '');
  return long.length === 0
    ? restored
    : restored.replace(new RegExp(`[^\n]{0,64}${STAND_IN}(\\d+)${STAND_IN}`, 'g'), (_m, i: string) => long[Number(i)]!);
}

/** The visible (new) part of a plain-text body. Never empty when the input has text. */
export function visibleReplyText(text: string): string {
  const normalized = text.replace(/\r\n?/g, '\n');
  const { text: above } = cutAtDelimiter(normalized);
  const visible = parseVisible(cutGenericHeader(cutOutlookHeader(cutJapaneseHeader(cutForwardSeparator(above))))).trim();
  if (visible !== '') return visible;
  // Everything looked like history (a bare forward, a signature-only mail): show it all rather than nothing.
  return above.trim() || normalized.trim();
}
