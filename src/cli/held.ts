import { closeContext, createContext, loadInstallation } from '../context.js';
import {
  deleteHeldInbound,
  findInboundMessage,
  getInboundOutcome,
  listHeldInbound,
  resetHeldForRelease,
} from '../db/queries/inbound-messages.js';
import { clearBounceReference } from '../db/queries/outbound-mails.js';
import { AppError } from '../errors.js';
import { HELD_REASONS, isHeldReason } from '../jobs/inbound/held.js';
import { processInboundMessage } from '../jobs/inbound/batch.js';
import { createLogger } from '../log.js';
import { parseCliArgs, positiveInt } from './args.js';
import { CliUsageError, type CliCommand, type CliEnv } from './types.js';

/**
 * Review of held inbound mail. `release` re-runs the pipeline on the stored
 * raw bytes with the rule that held it waived (and only that rule: a message
 * released from `loop` can still be held for `cc_limit`).
 */

function oneId(args: string[], usage: string): number {
  const [first, ...rest] = args;
  if (!first || rest.length || !/^\d+$/.test(first)) throw new CliUsageError(`usage: ${usage}`);
  return Number(first);
}

async function loadHeld(env: CliEnv, id: number) {
  const row = await findInboundMessage(env.db, id);
  if (!row) throw new AppError('NOT_FOUND', `no inbound message ${id}`);
  if (row.status !== 'held') throw new AppError('VALIDATION', `inbound message ${id} is ${row.status}, not held`);
  return row;
}

const clip = (s: string | null, n: number) => {
  const one = (s ?? '').replace(/[\r\n\t]+/g, ' ');
  return one.length > n ? `${one.slice(0, n - 1)}…` : one;
};

async function list(env: CliEnv, args: string[]): Promise<void> {
  const usage = 'held list [--reason REASON] [--limit N]';
  const { values } = parseCliArgs(args, { reason: { type: 'string' }, limit: { type: 'string' } }, usage);
  if (values.reason && !isHeldReason(values.reason)) {
    throw new CliUsageError(`unknown reason "${values.reason}"; one of: ${Object.keys(HELD_REASONS).join(', ')}`);
  }
  const limit = Math.min(positiveInt(values.limit, '--limit', usage) ?? 100, 10_000);
  const rows = await listHeldInbound(env.db, { reason: values.reason, limit });
  if (rows.length === 0) {
    env.io.out('no held messages');
    return;
  }
  env.io.out(['id', 'received', 'reason', 'from', 'subject', 'detail'].join('\t'));
  for (const r of rows) {
    env.io.out(
      [r.id, r.received_at.toISOString(), r.reason, r.from_address ?? `<${r.mail_from}>`, clip(r.subject, 60), clip(r.error, 100)].join(
        '\t',
      ),
    );
  }
}

async function show(env: CliEnv, args: string[]): Promise<void> {
  const id = oneId(args, 'held show <id>');
  const r = await loadHeld(env, id);
  const headerEnd = r.raw.indexOf('\r\n\r\n') >= 0 ? r.raw.indexOf('\r\n\r\n') : r.raw.indexOf('\n\n');
  const headers = r.raw.subarray(0, headerEnd < 0 ? Math.min(r.raw.length, 8192) : Math.min(headerEnd, 8192)).toString('latin1');
  const reason = r.reason && isHeldReason(r.reason) ? `${r.reason} (${HELD_REASONS[r.reason]})` : (r.reason ?? '');
  const lines = [
    `id:          ${r.id}`,
    `status:      held`,
    `reason:      ${reason}`,
    `detail:      ${r.error ?? ''}`,
    `received:    ${r.received_at.toISOString()}`,
    `processed:   ${r.processed_at?.toISOString() ?? ''}`,
    `envelope:    MAIL FROM:<${r.mail_from}> RCPT TO:${r.rcpt_to.map((a) => `<${a}>`).join(',')}`,
    `client:      ${r.client_address} (HELO ${r.helo})${r.tls ? ' TLS' : ''}`,
    `from:        ${r.from_address ?? ''}`,
    `subject:     ${r.subject ?? ''}`,
    `message-id:  ${r.header_message_id ?? ''}`,
    `ticket:      ${r.ticket_id ?? ''}`,
    `size:        ${r.size} bytes`,
    `released:    ${r.release_overrides.join(', ')}`,
  ];
  if (r.auth) lines.push(`auth:        ${JSON.stringify(r.auth)}`);
  lines.push('', '--- headers ---', headers.replace(/[^\t\n\r\x20-\x7e\x80-\xff]/g, '?'));
  for (const l of lines) env.io.out(l);
}

async function release(env: CliEnv, args: string[]): Promise<void> {
  const id = oneId(args, 'held release <id>');
  const r = await loadHeld(env, id);
  const overrides = [...new Set([...r.release_overrides, r.reason ?? ''])].filter(Boolean);
  // Back to `received` with the waiver recorded; the pipeline's own row lock and status check make this safe against a running worker.
  if (!(await resetHeldForRelease(env.db, id, overrides)))
    throw new AppError('VALIDATION', `inbound message ${id} changed while releasing; try again`);
  const ctx = createContext(env.config, createLogger('warn'));
  try {
    await loadInstallation(ctx);
    let result = await processInboundMessage(ctx, id);
    if (result.status === 'skipped') {
      // A running worker took the row first (parsing happens before the row lock): report what it decided.
      const row = await getInboundOutcome(env.db, id);
      if (row.status !== 'received')
        result = { inboundId: id, status: row.status === 'held' ? 'held' : 'processed', reason: row.reason, ticketId: row.ticket_id };
    }
    if (result.status === 'held') {
      env.io.out(`released ${id} from ${r.reason}; held again: ${result.reason}`);
    } else {
      env.io.out(
        `released ${id} from ${r.reason}; processed${result.ticketId ? ` as ticket ${result.ticketId}` : ''}${result.reason ? ` (${result.reason})` : ''}`,
      );
    }
  } finally {
    await closeContext(ctx);
  }
}

async function remove(env: CliEnv, args: string[]): Promise<void> {
  const id = oneId(args, 'held delete <id>');
  await loadHeld(env, id);
  await env.db.transaction().execute(async (trx) => {
    await clearBounceReference(trx, id);
    await deleteHeldInbound(trx, id);
  });
  env.io.out(`deleted held message ${id}`);
}

export const heldCommands: CliCommand[] = [
  { words: ['held', 'list'], usage: 'held list [--reason REASON] [--limit N]', run: list },
  { words: ['held', 'show'], usage: 'held show <id>', run: show },
  { words: ['held', 'release'], usage: 'held release <id>', run: release },
  { words: ['held', 'delete'], usage: 'held delete <id>', run: remove },
];
