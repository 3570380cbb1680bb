/**
 * The one Message-ID normaliser. Dedupe keys, stored ids and threading
 * lookups all go through it, so `<<id>>`, `< id >` and `<ID>` can never be
 * one id to the dedupe ledger and another to the ticket lookup (a planted
 * `<<id>>` used to get dedupe key `<id>` but be stored and found as `id`).
 */

/** Without any surrounding angle brackets or whitespace; case kept (the sender's client knows its own spelling). */
export function bareMessageId(id: string): string {
  // A loop, not /^[<\s]+|[>\s]+$/: the trailing alternative backtracks quadratically on long runs.
  let start = 0;
  let end = id.length;
  while (start < end && (id[start] === '<' || /\s/.test(id[start]!))) start++;
  while (end > start && (id[end - 1] === '>' || /\s/.test(id[end - 1]!))) end--;
  return id.slice(start, end);
}

/** The stored and compared form: bare and lower-case. */
export function normalizeMessageId(id: string): string {
  return bareMessageId(id).toLowerCase();
}
