import contentDisposition from 'content-disposition';
import type { AttachmentContent } from '../db/queries/portal-requests.js';
import { SAFE_CONTENT_TYPE } from '../mail/content-type.js';
import type { PortalContext } from './http.js';

/**
 * A stored file as a download: the portal's attachment route and the signed
 * file links of outbound mail answer with exactly these headers.
 */
export function attachmentDownload(c: PortalContext, found: AttachmentContent): Response {
  return c.body(new Uint8Array(found.content), 200, {
    'Content-Type': SAFE_CONTENT_TYPE.test(found.contentType) ? found.contentType : 'application/octet-stream',
    // Always a download, never rendered in our origin: an HTML or SVG attachment cannot run as us.
    'Content-Disposition': contentDisposition(found.filename || 'attachment', { type: 'attachment' }),
    'X-Content-Type-Options': 'nosniff',
    'Content-Security-Policy': "default-src 'none'; sandbox",
    'Cache-Control': 'private, no-store',
  });
}
