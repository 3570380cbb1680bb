/**
 * What the sender needs of one outbox row, read in one statement. The
 * statement and its row mapping live with the other outbound_mails queries
 * (src/db/queries/outbound-mail-contexts.ts); mail and job code import them
 * from here, where the mail domain's types have always been.
 */
export {
  loadMailContext,
  loadMailContexts,
  mailContextQuery,
  type BreakerCounts,
  type HistoryEntry,
  type LoadedMail,
  type MailAttachment,
  type MailContext,
  type MailContextConfig,
  type ThreadEntry,
} from '../db/queries/outbound-mail-contexts.js';
