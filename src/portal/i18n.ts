import { readFileSync } from 'node:fs';
import type { Context } from 'hono';
import { accepts } from 'hono/accepts';
import type { Locale } from '../db/database.js';

/**
 * The portal's message catalogues (templates/portal/i18n/<locale>.json):
 * flat keys, `{name}` placeholders. Output is plain text; Handlebars escapes it.
 */
export const LOCALES: readonly Locale[] = ['en', 'ja'];

export type Catalogue = Record<string, string>;

const I18N_DIR = new URL('../../templates/portal/i18n/', import.meta.url);

export function loadCatalogues(): Record<Locale, Catalogue> {
  const load = (l: Locale) => JSON.parse(readFileSync(new URL(`${l}.json`, I18N_DIR), 'utf8')) as Catalogue;
  return { en: load('en'), ja: load('ja') };
}

export function isLocale(value: unknown): value is Locale {
  return typeof value === 'string' && (LOCALES as readonly string[]).includes(value);
}

/** A missing key shows as the key itself: visible in review, never a crash. */
export function translate(catalogues: Record<Locale, Catalogue>, locale: Locale, key: string, vars: Record<string, unknown> = {}): string {
  const template = catalogues[locale][key] ?? catalogues.en[key] ?? key;
  return template.replace(/\{(\w+)\}/g, (whole, name: string) => (name in vars ? String(vars[name]) : whole));
}

/** Accept-Language, matching "ja-JP" to "ja" as well as exact tags. */
export function localeFromHeader(c: Context, fallback: Locale): Locale {
  const header = c.req.header('accept-language');
  if (!header) return fallback;
  const chosen = accepts(c, {
    header: 'Accept-Language',
    supports: [...LOCALES],
    default: fallback,
    match: (items, { supports, default: dflt }) => {
      const sorted = items.filter((a) => a.q > 0).sort((a, b) => b.q - a.q);
      for (const item of sorted) {
        const primary = item.type.toLowerCase().split('-')[0];
        const hit = supports.find((s) => s === primary);
        if (hit) return hit;
      }
      return dflt;
    },
  });
  return isLocale(chosen) ? chosen : fallback;
}
