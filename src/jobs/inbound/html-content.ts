import render from 'dom-serializer';
import { isTag, isText, type AnyNode, type ChildNode, type Element } from 'domhandler';
import { removeElement } from 'domutils';
import { parseDocument } from 'htmlparser2';
import sanitizeHtml from 'sanitize-html';
import { isForwardSeparator } from './text-content.js';

/**
 * HTML mail bodies: where the quoted history starts, the text a person sees,
 * and the allowlist sanitiser. Quote detection follows talon's idea: the
 * document is read as lines (split at <br> and block elements); the first
 * line that starts a known quote container or reads like a quote header is
 * where we cut, and everything after it in document order goes.
 */

const BLOCK_TAGS = new Set([
  'address',
  'article',
  'aside',
  'blockquote',
  'body',
  'center',
  'dd',
  'div',
  'dl',
  'dt',
  'fieldset',
  'figure',
  'footer',
  'form',
  'h1',
  'h2',
  'h3',
  'h4',
  'h5',
  'h6',
  'header',
  'hr',
  'html',
  'li',
  'main',
  'nav',
  'ol',
  'p',
  'pre',
  'section',
  'table',
  'tbody',
  'td',
  'tfoot',
  'th',
  'thead',
  'tr',
  'ul',
]);
const SKIP_TAGS = new Set(['head', 'style', 'script', 'title', 'template', 'noscript', 'xml']);

/** Containers mail clients wrap quoted history in. */
function isQuoteContainer(el: Element): boolean {
  const name = el.name.toLowerCase();
  if (name === 'blockquote' || name === 'hr') return true;
  const id = (el.attribs.id ?? '').toLowerCase();
  const cls = ` ${(el.attribs.class ?? '').toLowerCase()} `;
  if (
    [
      'divrplyfwdmsg',
      'olk_src_body_section',
      'appendonsend',
      'stopspelling',
      'isforwardcontent',
      'mail-editor-reference-message-container',
    ].includes(id)
  )
    return true;
  if (/ (gmail_quote|gmail_attr|moz-cite-prefix|yahoo_quoted|protonmail_quote|zmail_extra|ms-outlook-mobile-reference-message) /.test(cls))
    return true;
  // Outlook desktop separates the quoted message with a top-bordered div.
  const style = (el.attribs.style ?? '').toLowerCase().replace(/\s+/g, '');
  return name === 'div' && /border-top:solid|border-top-style:solid/.test(style) && !/border-(left|right|bottom):solid/.test(style);
}

const HEADER_LINE = [
  /^-{2,}\s*(original message|forwarded message|message d'origine|ursprüngliche nachricht|oprindelig besked|mensaje original)\s*-{2,}$/i,
  /^(on|le|am|el|il|em|op|den|w dniu)\s.{4,200}(wrote|écrit|schrieb|escribió|scritto|escreveu|schreef|skrev|napisał|pisze)\s?:?$/i,
  /^.{0,200}\d.{0,200}(<[^<>\s]+@[^<>\s]+>|\[mailto:[^\]]+\]|&lt;[^\s]+@[^\s]+&gt;)\s*:$/i, // "26.06.2014, 14:41, "A" <a@b>:"
  /^\d{4}年.{1,80}<[^<>\s]+@[^<>\s]+>:$/, // Japanese Gmail
];
const FROM_LINE = /^(from|von|de|van|da|от|差出人|发件人|寄件者)\s?[:：]/i;
const FOLLOWING_HEADER = /^(sent|date|to|subject|gesendet|an|betreff|envoyé|à|objet|отправлено|кому|тема|日付|送信日時|宛先|件名)\s?[:：]/i;

interface Line {
  first: ChildNode | null;
  text: string;
  quoteStart: boolean;
}

/** Splits a document into visual lines, remembering each line's first node. */
function toLines(roots: ChildNode[]): Line[] {
  const lines: Line[] = [];
  let current: Line = { first: null, text: '', quoteStart: false };
  const breakLine = () => {
    lines.push(current);
    current = { first: null, text: '', quoteStart: false };
  };
  const walk = (node: ChildNode): void => {
    if (isText(node)) {
      const t = node.data.replace(/\s+/g, ' ');
      if (t.trim() === '' && current.first === null) return;
      current.first ??= node;
      current.text += t;
      return;
    }
    if (!isTag(node)) return;
    const name = node.name.toLowerCase();
    if (SKIP_TAGS.has(name)) return;
    if (name === 'br') {
      current.first ??= node;
      breakLine();
      return;
    }
    const block = BLOCK_TAGS.has(name);
    const quote = isQuoteContainer(node);
    if (block || quote) {
      if (current.first !== null) breakLine();
      current.first = node;
      current.quoteStart = quote;
    } else if (current.first === null) {
      current.first = node;
    }
    for (const child of node.children) walk(child);
    if (block && current.first !== null) breakLine();
  };
  for (const r of roots) walk(r);
  if (current.first !== null) lines.push(current);
  return lines.map((l) => ({ ...l, text: l.text.trim() }));
}

function findCutLine(lines: Line[]): number {
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.quoteStart) return i;
    const text = line.text;
    if (text === '' || text.length > 400) continue;
    if (HEADER_LINE.some((re) => re.test(text))) return i;
    // The same forward separators as plain text (en/de/fr/es/ja/zh), e.g. "-----元のメッセージ-----".
    if (isForwardSeparator(text)) return i;
    // "On <date>, <name>" + "wrote:" split over two lines by wrapping.
    if (/^on\s/i.test(text) && /^.{0,120}wrote:$/i.test(lines[i + 1]?.text ?? '')) return i;
    if (FROM_LINE.test(text)) {
      const next = lines.slice(i, i + 6).map((l) => l.text);
      if (
        next.some((t, k) => k > 0 && FOLLOWING_HEADER.test(t)) ||
        next.some((t) => /(sent|date|to|subject)\s?:/i.test(t.replace(FROM_LINE, '')))
      )
        return i;
    }
  }
  return -1;
}

/** Removes `node` and everything after it in document order. */
function cutFrom(node: ChildNode): void {
  let cur: AnyNode = node;
  let removeSelf = true;
  while (cur.parent) {
    const parent: AnyNode = cur.parent;
    const siblings = (parent as Element).children;
    const idx = siblings.indexOf(cur as ChildNode);
    for (const s of siblings.slice(idx + (removeSelf ? 0 : 1))) removeElement(s);
    removeSelf = false;
    cur = parent;
  }
}

function linesToText(lines: Line[]): string {
  return lines
    .map((l) => l.text)
    .join('\n')
    .replace(/\n{3,}/g, '\n\n')
    .trim();
}

export interface HtmlSplit {
  /** Full document as plain text. */
  fullText: string;
  /** The HTML without quoted history (unsanitised: sanitise before display). */
  visibleHtml: string;
  visibleText: string;
}

/** Splits an HTML body into its new part and the quoted history. Falls back to the whole body if the cut would leave nothing. */
export function splitHtmlQuote(html: string): HtmlSplit {
  const doc = parseDocument(html, { decodeEntities: true });
  const lines = toLines(doc.children);
  const fullText = linesToText(lines);
  const cut = findCutLine(lines);
  if (cut <= 0) return { fullText, visibleHtml: html, visibleText: fullText };
  const kept = linesToText(lines.slice(0, cut));
  if (kept === '') return { fullText, visibleHtml: html, visibleText: fullText };
  cutFrom(lines[cut]!.first!);
  return { fullText, visibleHtml: render(doc, { decodeEntities: false }), visibleText: kept };
}

/** Plain text of an HTML fragment, lines as a reader sees them. */
export function htmlToPlainText(html: string): string {
  return linesToText(toLines(parseDocument(html, { decodeEntities: true }).children));
}

const ALLOWED_TAGS = [
  'a',
  'abbr',
  'b',
  'blockquote',
  'br',
  'caption',
  'center',
  'cite',
  'code',
  'col',
  'colgroup',
  'dd',
  'del',
  'div',
  'dl',
  'dt',
  'em',
  'font',
  'h1',
  'h2',
  'h3',
  'h4',
  'h5',
  'h6',
  'hr',
  'i',
  'img',
  'ins',
  'kbd',
  'li',
  'mark',
  'ol',
  'p',
  'pre',
  'q',
  's',
  'small',
  'span',
  'strike',
  'strong',
  'sub',
  'sup',
  'table',
  'tbody',
  'td',
  'tfoot',
  'th',
  'thead',
  'tr',
  'u',
  'ul',
];

/**
 * Allowlist sanitiser for display. No scripts, no event handlers, no styles
 * (CSS can exfiltrate and overlay); links only http(s)/mailto and opened
 * without referrer. Remote images are never loaded by default: their URL
 * moves to data-remote-src, which the portal may restore on request; inline
 * images keep their cid: reference and are served from our attachments.
 */
export function sanitizeMailHtml(html: string): string {
  return sanitizeHtml(html, {
    allowedTags: ALLOWED_TAGS,
    allowedAttributes: {
      a: ['href', 'title', 'rel', 'target'],
      img: ['src', 'alt', 'title', 'width', 'height', 'data-remote-src'],
      td: ['colspan', 'rowspan', 'align', 'valign'],
      th: ['colspan', 'rowspan', 'align', 'valign'],
      '*': ['dir', 'lang'],
    },
    allowedSchemes: ['http', 'https', 'mailto'],
    allowedSchemesByTag: { img: ['cid'] },
    allowProtocolRelative: false,
    disallowedTagsMode: 'discard',
    nonTextTags: ['style', 'script', 'textarea', 'option', 'noscript', 'title', 'head', 'template', 'xml'],
    transformTags: {
      a: (tagName, attribs) => ({
        tagName,
        attribs: { ...attribs, rel: 'noopener noreferrer nofollow', target: '_blank' },
      }),
      img: (tagName, attribs) => {
        const src = (attribs.src ?? '').trim();
        if (/^cid:/i.test(src)) return { tagName, attribs: { ...attribs, src } };
        const { src: _drop, ...rest } = attribs;
        return { tagName, attribs: /^https?:/i.test(src) ? { ...rest, 'data-remote-src': src } : rest };
      },
    },
    allowedSchemesAppliedToAttributes: ['href', 'src', 'cite'],
  });
}
