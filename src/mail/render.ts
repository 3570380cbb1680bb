import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import Handlebars from 'handlebars';
import type { Locale, OutboundKind } from '../db/database.js';

/**
 * Mail templates: templates/mail/<locale>/<kind>.{subject,text,html}.hbs plus
 * one HTML layout. HTML parts use Handlebars' escaping, so user content
 * (names, subjects, message text) can never inject markup; plain-text parts
 * and subjects are compiled without HTML escaping (it would show up as
 * `&amp;` in the reader) and subjects are flattened to one line afterwards,
 * so they cannot inject headers either.
 */

export const TEMPLATE_DIR = fileURLToPath(new URL('../../templates/mail/', import.meta.url));

/** The line our reply parser cuts at; ticket mails start with it. */
export const REPLY_DELIMITER = '##- Please type your reply above this line -##';
export const REPLY_DELIMITER_HINT: Record<Locale, string> = {
  en: '',
  ja: '（このメールに返信する場合は、この行より上に入力してください）',
};

type Part = 'subject' | 'text' | 'html';
type Template = Handlebars.TemplateDelegate;

const hbs = Handlebars.create();

hbs.registerHelper('multiline', (value: unknown) => {
  const escaped = hbs.Utils.escapeExpression(String(value ?? ''));
  return new hbs.SafeString(escaped.replace(/\r?\n/g, '<br>\n'));
});

/** Quoted like a mail client quotes: every line behind "> ". */
hbs.registerHelper('quote', (value: unknown) =>
  String(value ?? '')
    .replace(/\r\n?/g, '\n')
    .split('\n')
    .map((l) => (l ? `> ${l}` : '>'))
    .join('\n'),
);

// Shared pieces of the ticket mails (templates/mail/<locale>/_<name>.<part>.hbs), used as {{> en_files_text}}.
// A partial is compiled with the options of the template that calls it, so text parts stay unescaped.
for (const locale of ['en', 'ja'] as const) {
  for (const name of ['files', 'history']) {
    for (const p of ['text', 'html'])
      hbs.registerPartial(`${locale}_${name}_${p}`, readFileSync(`${TEMPLATE_DIR}${locale}/_${name}.${p}.hbs`, 'utf8'));
  }
}

const cache = new Map<string, Template>();

function load(file: string, escape: boolean): Template {
  const key = `${file}:${escape}`;
  let t = cache.get(key);
  if (!t) {
    const source = readFileSync(`${TEMPLATE_DIR}${file}`, 'utf8');
    // strict: a template asking for data we did not pass is a bug to surface, not a blank to send.
    t = hbs.compile(source, { strict: true, noEscape: !escape });
    cache.set(key, t);
  }
  return t;
}

function part(kind: OutboundKind, locale: Locale, p: Part): Template {
  return load(`${locale}/${kind}.${p}.hbs`, p === 'html');
}

/** One line, no control characters, bounded: safe as a header value whatever the input. */
export function oneLine(value: string, max = 250): string {
  const flat = value
    // eslint-disable-next-line no-control-regex -- control characters are what a header value must not hold
    .replace(/[\u0000-\u001f\u007f\u2028\u2029]+/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

export interface RenderedMail {
  subject: string;
  text: string;
  html: string;
}

export interface LayoutData {
  /** Shown greyed at the top of ticket mails; empty for account mails. */
  delimiter: string;
  delimiterHint: string;
  /** The signed ticket tag, printed in the footer; empty for account mails. */
  tag: string;
}

export function renderMail(kind: OutboundKind, locale: Locale, data: Record<string, unknown> & LayoutData): RenderedMail {
  const subject = oneLine(part(kind, locale, 'subject')(data));
  const text =
    part(
      kind,
      locale,
      'text',
    )(data)
      .replace(/\n{3,}/g, '\n\n')
      .trim() + '\n';
  const content = part(kind, locale, 'html')(data);
  const html = load('layout.html.hbs', true)({ ...data, lang: locale, subject, content });
  return { subject, text, html };
}

/** Fails fast at start-up (and in tests) when a template is missing or does not compile. */
export function preloadTemplates(kinds: readonly OutboundKind[], locales: readonly Locale[] = ['en', 'ja']): void {
  for (const locale of locales) for (const kind of kinds) for (const p of ['subject', 'text', 'html'] as const) part(kind, locale, p);
  load('layout.html.hbs', true);
}
