import { z } from 'zod';
import type { AppContext } from '../context.js';
import type { Db } from '../db/database.js';
import { latestPublicMessageIds } from '../db/queries/messages.js';
import { lockDueTickets, markPendingReminded, setTicketsStatus, type DueTicket } from '../db/queries/tickets.js';
import { lockDueSurveys, markSurveysSent } from '../db/queries/tickets-csat.js';
import { findUserRefs } from '../db/queries/users.js';
import { isOurAddress, isValidEmail } from '../core/address.js';
import { insertOutboundMails, type OutboxInsert } from '../mail/outbox.js';
import { defineJob, guarded } from './define-job.js';
import { deleteExpiredSubmissions } from '../db/queries/portal-submissions.js';
import { enqueueOutboundAfterCommit } from './send-mail.js';

/**
 * Ticket lifecycle automations, Zendesk's defaults:
 *  - solved for SOLVED_CLOSE_AFTER without a customer reply → closed
 *    (silently; a later reply opens a linked follow-up ticket);
 *  - pending (waiting for the customer) for PENDING_REMINDER_AFTER → one
 *    reminder to the requester;
 *  - pending for PENDING_SOLVE_AFTER → solved, with a note to the requester;
 *  - solved for CSAT_AFTER → the satisfaction survey to the requester, once
 *    per ticket (tickets.csat_sent_at), unless CSAT=off.
 * A customer reply reopens a solved or pending ticket, which restarts the
 * clock (status_changed_at). One run is one transaction; each transition is
 * decided by the row itself under a lock, so a run repeated after a crash, or
 * two workers running at once, never moves a ticket or mails about it twice.
 */

/** Tickets per transition per run: a backlog drains over a few runs instead of one long transaction. */
const BATCH = 500;

export interface LifecycleCounts {
  closed: number;
  autoSolved: number;
  reminded: number;
  surveyed: number;
}

type LifecycleEvent = 'pending_reminder' | 'auto_solved' | 'csat';

const ago = (now: Date, ms: number) => new Date(now.getTime() - ms);

async function lifecycleMails(trx: Db, ctx: AppContext, due: Array<{ ticket: DueTicket; event: LifecycleEvent }>): Promise<number[]> {
  if (due.length === 0) return [];
  const users = new Map(
    (
      await findUserRefs(
        trx,
        due.map((d) => d.ticket.requesterId),
      )
    ).map((u) => [u.id, u]),
  );
  const latest = await latestPublicMessageIds(
    trx,
    due.map((d) => d.ticket.id),
  );
  const rows: Array<OutboxInsert<'ticket_lifecycle'>> = [];
  for (const { ticket, event } of due) {
    const to = users.get(ticket.requesterId);
    // Staff-opened tickets have a staff requester: they follow their tickets through notifications.
    if (!to || to.role !== 'customer' || !isValidEmail(to.email) || isOurAddress(ctx.config, to.email)) continue;
    rows.push({
      kind: 'ticket_lifecycle',
      recipient: to.email,
      userId: to.id,
      locale: to.locale,
      ticketId: ticket.id,
      ticketMessageId: latest.get(ticket.id) ?? null,
      payload: { event },
    });
  }
  return insertOutboundMails(trx, ctx.config, rows);
}

/** One run of every automation at `now` (tests pass a later clock instead of waiting). */
export async function runLifecycle(ctx: AppContext, now: Date = new Date()): Promise<LifecycleCounts> {
  const cfg = ctx.config;
  const { counts, outboxIds } = await ctx.db.transaction().execute(async (trx) => {
    // Closing first: a ticket auto-solved below has a fresh status_changed_at and is not closed in the same run.
    const closed =
      cfg.SOLVED_CLOSE_AFTER === null
        ? []
        : await lockDueTickets(trx, { status: 'solved', before: ago(now, cfg.SOLVED_CLOSE_AFTER), limit: BATCH });
    await setTicketsStatus(
      trx,
      closed.map((t) => t.id),
      'closed',
      now,
    );

    const solved =
      cfg.PENDING_SOLVE_AFTER === null
        ? []
        : await lockDueTickets(trx, { status: 'pending', before: ago(now, cfg.PENDING_SOLVE_AFTER), limit: BATCH });
    await setTicketsStatus(
      trx,
      solved.map((t) => t.id),
      'solved',
      now,
    );

    // Those just solved are no longer pending, so they are not also reminded.
    const reminded =
      cfg.PENDING_REMINDER_AFTER === null
        ? []
        : await lockDueTickets(trx, { status: 'pending', before: ago(now, cfg.PENDING_REMINDER_AFTER), notReminded: true, limit: BATCH });
    await markPendingReminded(
      trx,
      reminded.map((t) => t.id),
      now,
    );

    // After closing: a ticket closed in this run is past rating, so it is not surveyed.
    const surveyed = cfg.CSAT ? await lockDueSurveys(trx, { before: ago(now, cfg.CSAT_AFTER), limit: BATCH }) : [];
    await markSurveysSent(
      trx,
      surveyed.map((t) => t.id),
      now,
    );

    const ids = await lifecycleMails(trx, ctx, [
      ...solved.map((ticket) => ({ ticket, event: 'auto_solved' as const })),
      ...reminded.map((ticket) => ({ ticket, event: 'pending_reminder' as const })),
      ...surveyed.map((ticket) => ({ ticket, event: 'csat' as const })),
    ]);
    return {
      counts: { closed: closed.length, autoSolved: solved.length, reminded: reminded.length, surveyed: surveyed.length },
      outboxIds: ids,
    };
  });
  await enqueueOutboundAfterCommit(ctx, outboxIds);
  // A visitor's unconfirmed request (and its files) must not outlive its link, even when nobody submits again.
  const expired = await deleteExpiredSubmissions(ctx.db, now);
  if (expired > 0) ctx.log.info({ expired }, 'expired unconfirmed portal requests deleted');
  if (counts.closed + counts.autoSolved + counts.reminded + counts.surveyed > 0) ctx.log.info(counts, 'ticket lifecycle applied');
  return counts;
}

export const lifecycleJob = defineJob({
  name: 'ticket-lifecycle',
  // Runs beside send-mail: short, database-only work that mostly produces mail.
  queue: 'outbound',
  schema: z.object({}),
  options: { attempts: 3, backoff: { type: 'exponential', delay: 10_000 }, removeOnComplete: true, removeOnFail: { count: 100 } },
  handler: (ctx) => runLifecycle(ctx),
});

const SCHEDULER_ID = 'ticket-lifecycle';

/**
 * Registers the repeatable job. BullMQ's job scheduler keeps one schedule per
 * id in Redis, so every worker upserting it at start still yields one run
 * per interval for the whole installation, and it survives restarts.
 */
export async function scheduleLifecycle(ctx: AppContext): Promise<void> {
  await guarded(ctx, 'schedule ticket lifecycle', () =>
    ctx.queues.outbound.upsertJobScheduler(
      SCHEDULER_ID,
      { every: ctx.config.LIFECYCLE_INTERVAL_MS },
      { name: lifecycleJob.name, data: {}, opts: lifecycleJob.options },
    ),
  );
}
