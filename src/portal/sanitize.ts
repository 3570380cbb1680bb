import sanitizeHtml from 'sanitize-html';

/**
 * Second line of defence for mail HTML shown in the portal. The inbound
 * pipeline already sanitises body_html; this runs again at render time with
 * a narrow allowlist so a bug or a future column can never put script, style,
 * forms or event handlers on the page. CSP (no inline script) is the third line.
 */
const OPTIONS: sanitizeHtml.IOptions = {
  allowedTags: [...sanitizeHtml.defaults.allowedTags.filter((t) => t !== 'style'), 'img', 'font', 'center'],
  allowedAttributes: {
    a: ['href', 'name', 'title', 'rel', 'target'],
    img: ['src', 'alt', 'title', 'width', 'height'],
    td: ['colspan', 'rowspan', 'align', 'valign'],
    th: ['colspan', 'rowspan', 'align', 'valign', 'scope'],
    table: ['summary'],
    ol: ['start', 'type'],
    '*': ['lang', 'dir'],
  },
  allowedSchemes: ['http', 'https', 'mailto'],
  // Remote images are blocked by CSP anyway (img-src 'self' data:); tracking pixels never load.
  allowedSchemesByTag: { img: ['data', 'cid'] },
  allowProtocolRelative: false,
  disallowedTagsMode: 'discard',
  transformTags: {
    a: sanitizeHtml.simpleTransform('a', { rel: 'noopener noreferrer nofollow', target: '_blank' }),
  },
};

export function sanitizeMailHtml(html: string): string {
  return sanitizeHtml(html, OPTIONS);
}
