import { readdirSync, readFileSync } from 'node:fs';
import Handlebars from 'handlebars';
import type { Locale } from '../db/database.js';
import { loadCatalogues, translate, type Catalogue } from './i18n.js';

/**
 * Server-rendered pages: templates/portal/pages/<name>.hbs inside
 * templates/portal/layout.hbs. Handlebars escapes every `{{value}}`; the only
 * triple-stash in the templates is for HTML this module itself produced
 * (sanitised message bodies, the page inside the layout).
 */
const TEMPLATE_DIR = new URL('../../templates/portal/', import.meta.url);

/** What every template can read at @root. */
export interface RootData {
  locale: Locale;
  publicUrl: string;
  timeZone: string;
  csrfToken: string;
  [key: string]: unknown;
}

export interface Views {
  render(page: string, root: RootData): string;
  t(locale: Locale, key: string, vars?: Record<string, unknown>): string;
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / (1024 * 1024)).toFixed(1)} MB`;
}

export function loadViews(): Views {
  const catalogues: Record<Locale, Catalogue> = loadCatalogues();
  const hb = Handlebars.create();
  const formatters = new Map<string, Intl.DateTimeFormat>();
  const dateFormat = (locale: Locale, timeZone: string) => {
    const key = `${locale}|${timeZone}`;
    let f = formatters.get(key);
    if (!f) {
      f = new Intl.DateTimeFormat(locale === 'ja' ? 'ja-JP' : 'en-GB', { dateStyle: 'medium', timeStyle: 'short', timeZone });
      formatters.set(key, f);
    }
    return f;
  };
  const root = (options: Handlebars.HelperOptions): RootData => options.data.root as RootData;

  hb.registerHelper('t', function (key: string, options: Handlebars.HelperOptions) {
    return translate(catalogues, root(options).locale, key, options.hash);
  });
  // {{url "/requests/" id}}: an absolute link under PUBLIC_URL, never derived from the request's Host.
  hb.registerHelper('url', function (...args: unknown[]) {
    const options = args.pop() as Handlebars.HelperOptions;
    return root(options).publicUrl + args.map(String).join('');
  });
  hb.registerHelper('time', function (value: Date | string, options: Handlebars.HelperOptions) {
    const date = value instanceof Date ? value : new Date(value);
    const r = root(options);
    const text = dateFormat(r.locale, r.timeZone).format(date);
    return new hb.SafeString(`<time datetime="${date.toISOString()}">${hb.escapeExpression(text)}</time>`);
  });
  hb.registerHelper('csrf', function (options: Handlebars.HelperOptions) {
    return new hb.SafeString(`<input type="hidden" name="_csrf" value="${hb.escapeExpression(root(options).csrfToken)}">`);
  });
  hb.registerHelper('eq', (a: unknown, b: unknown) => a === b);
  // {{url "/x?next=" (enc next)}}: a query value, percent-encoded (Handlebars then HTML-escapes it).
  hb.registerHelper('enc', (v: unknown) => encodeURIComponent(typeof v === 'string' ? v : ''));
  hb.registerHelper('or', (...args: unknown[]) => args.slice(0, -1).some(Boolean));
  hb.registerHelper('bytes', (n: number) => formatBytes(n));

  for (const file of readdirSync(new URL('partials/', TEMPLATE_DIR))) {
    if (!file.endsWith('.hbs')) continue;
    hb.registerPartial(file.slice(0, -4), readFileSync(new URL(`partials/${file}`, TEMPLATE_DIR), 'utf8'));
  }
  const compile = (path: string) => hb.compile(readFileSync(new URL(path, TEMPLATE_DIR), 'utf8'), { strict: false });
  const layout = compile('layout.hbs');
  const pages = new Map<string, HandlebarsTemplateDelegate>();
  for (const file of readdirSync(new URL('pages/', TEMPLATE_DIR))) {
    if (file.endsWith('.hbs')) pages.set(file.slice(0, -4), compile(`pages/${file}`));
  }

  return {
    render(page, data) {
      const template = pages.get(page);
      if (!template) throw new Error(`no portal template "${page}"`);
      const body = template(data);
      return layout({ ...data, body: new hb.SafeString(body) });
    },
    t: (locale, key, vars) => translate(catalogues, locale, key, vars),
  };
}

export { formatBytes };
