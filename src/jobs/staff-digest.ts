import { z } from 'zod';
import type { AppContext } from '../context.js';
import { listOpenTicketsByAssignee, type DigestTicket } from '../db/queries/tickets.js';
import { isOurAddress, isValidEmail } from '../core/address.js';
import { countRatingsSince } from '../db/queries/tickets-csat.js';
import { listStaffRefs } from '../db/queries/users.js';
import { insertOutboundMails, type OutboxInsert } from '../mail/outbox.js';
import { defineJob, guarded } from './define-job.js';
import { enqueueOutboundAfterCommit } from './send-mail.js';

/**
 * The daily staff digest: at STAFF_DIGEST_AT in STAFF_DIGEST_TIME_ZONE every
 * staff member gets one mail listing their open tickets and every unassigned
 * one, oldest first, with age, status, priority and a link (and the day's
 * satisfaction ratings); nobody gets an
 * empty one. It goes through the outbox like every mail. One mail per staff
 * member and local day is a unique index on the outbox, so a run repeated
 * after a crash, a second worker or a manual run the same day adds nothing.
 */

/** Tickets per list (mine, unassigned); the mail says how many more there are. */
const PER_LIST = 50;

export interface DigestCounts {
  date: string;
  queued: number;
}

/** The calendar date of `now` in a time zone, as YYYY-MM-DD. */
export function localDate(now: Date, timeZone: string): string {
  // en-CA formats dates as ISO (YYYY-MM-DD).
  return new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' }).format(now);
}

const snapshot = (t: DigestTicket, mine: boolean) => ({
  id: t.id,
  subject: t.subject.slice(0, 300),
  status: t.status,
  priority: t.priority,
  createdAt: t.createdAt.toISOString(),
  mine,
  csat: t.csatRating,
});

/** One digest run at `now` (tests pass a clock); returns how many digests were queued. */
export async function runStaffDigest(ctx: AppContext, now: Date = new Date()): Promise<DigestCounts> {
  const date = localDate(now, ctx.config.STAFF_DIGEST_TIME_ZONE);
  const outboxIds = await ctx.db.transaction().execute(async (trx) => {
    const open = await listOpenTicketsByAssignee(trx, PER_LIST);
    const unassigned = open.filter((t) => t.assigneeId === null);
    const queueTotal = unassigned[0]?.total ?? 0;
    const csat = await countRatingsSince(trx, new Date(now.getTime() - 86_400_000));
    const rows: Array<OutboxInsert<'staff_digest'>> = [];
    for (const staff of await listStaffRefs(trx)) {
      if (!isValidEmail(staff.email) || isOurAddress(ctx.config, staff.email)) continue;
      const mine = open.filter((t) => t.assigneeId === staff.id);
      if (mine.length === 0 && unassigned.length === 0) continue;
      const tickets = [...mine.map((t) => snapshot(t, true)), ...unassigned.map((t) => snapshot(t, false))].sort(
        (a, b) => a.createdAt.localeCompare(b.createdAt) || a.id - b.id,
      );
      const more = (mine[0]?.total ?? 0) - mine.length + queueTotal - unassigned.length;
      rows.push({
        kind: 'staff_digest',
        recipient: staff.email,
        userId: staff.id,
        locale: staff.locale,
        payload: { date, tickets, more, csat },
      });
    }
    return insertOutboundMails(trx, ctx.config, rows, { skipDuplicates: true });
  });
  await enqueueOutboundAfterCommit(ctx, outboxIds);
  if (outboxIds.length) ctx.log.info({ date, digests: outboxIds.length }, 'staff digests queued');
  return { date, queued: outboxIds.length };
}

export const staffDigestJob = defineJob({
  name: 'staff-digest',
  queue: 'outbound',
  schema: z.object({}),
  options: { attempts: 5, backoff: { type: 'exponential', delay: 30_000 }, removeOnComplete: true, removeOnFail: { count: 100 } },
  handler: (ctx) => runStaffDigest(ctx),
});

const SCHEDULER_ID = 'staff-digest';

/** Registers (or, with STAFF_DIGEST_AT=off, removes) the daily cron schedule: one per installation, kept in Redis. */
export async function scheduleStaffDigest(ctx: AppContext): Promise<void> {
  const at = ctx.config.STAFF_DIGEST_AT;
  const queue = ctx.queues.outbound;
  if (!at) {
    await guarded(ctx, 'remove staff digest schedule', () => queue.removeJobScheduler(SCHEDULER_ID));
    return;
  }
  await guarded(ctx, 'schedule staff digest', () =>
    queue.upsertJobScheduler(
      SCHEDULER_ID,
      { pattern: `${at.minute} ${at.hour} * * *`, tz: ctx.config.STAFF_DIGEST_TIME_ZONE },
      { name: staffDigestJob.name, data: {}, opts: staffDigestJob.options },
    ),
  );
}
