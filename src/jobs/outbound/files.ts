import type { AppContext } from '../../context.js';
import { loadAttachmentContents } from '../../db/queries/attachments.js';
import { composeMail, type ComposedMail } from '../../mail/compose.js';
import type { LoadedMail } from '../../db/queries/outbound-mail-contexts.js';
import { sendComposed, type SendResult } from '../../mail/transport.js';

/**
 * Sending a mail that carries files. The bytes are read here, through the
 * pool and not the delivery transaction's connection, so the transaction
 * never holds megabytes while it waits on the relay. A relay that refuses the
 * size (552, or an enhanced 5.3.4) gets the same mail again with every file
 * as a signed link instead.
 */

const NONE: ReadonlyMap<number, Buffer> = new Map();

export function isSizeRefusal(err: unknown): boolean {
  const e = (err ?? {}) as { responseCode?: number; response?: string };
  return (
    e.responseCode === 552 || (typeof e.responseCode === 'number' && e.responseCode >= 500 && /\b5\.3\.4\b/.test(String(e.response ?? '')))
  );
}

export async function sendWithFiles(ctx: AppContext, loaded: LoadedMail, mail: ComposedMail): Promise<SendResult> {
  const contents = mail.files.length
    ? await loadAttachmentContents(
        ctx.db,
        mail.files.map((f) => f.attachmentId),
      )
    : NONE;
  try {
    return await sendComposed(ctx.transport, mail, contents);
  } catch (err) {
    if (mail.files.length === 0 || mail.linked || !isSizeRefusal(err)) throw err;
    ctx.log.info({ outboundId: loaded.row.id, err: String(err) }, 'relay refused the mail with its files; sending links instead');
    return sendComposed(ctx.transport, composeMail(ctx.config, loaded.row, loaded.context, { links: true }));
  }
}
