import { bareMessageId } from '../core/message-id.js';
import type { ThreadEntry } from '../db/queries/outbound-mail-contexts.js';

/**
 * In-Reply-To / References for one outbound mail, so Gmail, Outlook and
 * Apple Mail show the whole ticket as one conversation.
 *
 * The conversation is every stored Message-ID of the ticket (inbound mail
 * from anyone) plus our own mails already sent to this recipient, oldest
 * first. In-Reply-To points at the newest message the recipient has
 * actually seen (one they wrote or one we sent them) so clients that
 * thread on In-Reply-To alone find a parent; References carries the root
 * and the most recent ids, capped like other MUAs do.
 */

export const MAX_REFERENCES = 20;

export interface ThreadHeaders {
  inReplyTo: string | null;
  references: string[];
}

export function buildThreadHeaders(thread: ThreadEntry[]): ThreadHeaders {
  const entries: Array<{ id: string; seen: boolean }> = [];
  const known = new Set<string>();
  for (const t of thread) {
    // The recipient's client knows the header's original spelling; ours are lower-case already.
    const original = t.original ? bareMessageId(t.original) : '';
    const id = original && original.toLowerCase() === t.id ? original : t.id;
    const key = id.toLowerCase();
    if (!id || known.has(key) || /[\s<>]/.test(id)) continue;
    known.add(key);
    entries.push({ id, seen: t.seen });
  }
  if (entries.length === 0) return { inReplyTo: null, references: [] };

  const parent = [...entries].reverse().find((e) => e.seen) ?? entries[entries.length - 1]!;
  const ids = entries.map((e) => e.id);
  let references = ids.length <= MAX_REFERENCES ? ids : [ids[0]!, ...ids.slice(-(MAX_REFERENCES - 1))];
  // The parent must appear in References too, or strict threaders start a new thread.
  if (!references.includes(parent.id)) references = [ids[0]!, parent.id, ...references.slice(-(MAX_REFERENCES - 2))];
  return { inReplyTo: parent.id, references };
}
