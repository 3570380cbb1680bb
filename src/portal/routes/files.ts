import type { Hono } from 'hono';
import { findAttachmentForLink } from '../../db/queries/attachments.js';
import { AppError } from '../../errors.js';
import { verifyFileToken } from '../../mail/tokens.js';
import { attachmentDownload } from '../download.js';
import type { PortalDeps, PortalEnv } from '../http.js';

/**
 * GET /files/<token>: the file links of outbound mail, for people who only
 * use email. No session: the token is the permission — signed for one
 * recipient and one file, expiring after FILE_LINK_TTL, and checked against
 * the recipient's current access, so removing a participant revokes it.
 * Every refusal looks the same (404).
 */
export function registerFileRoutes(app: Hono<PortalEnv>, deps: PortalDeps): void {
  const { ctx } = deps;
  app.get('/files/:token', async (c) => {
    const link = verifyFileToken(ctx.config.SECRET_KEY, c.req.param('token'), new Date());
    if (!link) throw new AppError('NOT_FOUND', 'file link invalid or expired');
    const found = await findAttachmentForLink(ctx.db, link.attachmentId, link.userId);
    if (!found) throw new AppError('NOT_FOUND', `file link to attachment ${link.attachmentId}: no access`);
    // The URL is the credential: keep it out of Referer headers of anything the download might open.
    c.header('Referrer-Policy', 'no-referrer');
    return attachmentDownload(c, found);
  });
}
