import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Queue } from 'bullmq';
import type { Db, LabelledCount } from './db/database.js';
import { countHeldInboundByReason, countPendingInbound } from './db/queries/inbound-messages.js';
import { countFailedOutboundByKind, countQueuedOutbound } from './db/queries/outbound-mails.js';
import { countCsatRatings } from './db/queries/tickets-csat.js';

/** A count query behind a gauge. */
type CountQuery = (db: Db) => Promise<LabelledCount[]>;

/**
 * Prometheus metrics. One registry per app context (not prom-client's global
 * one) so several replyline instances in one process — the test suite — never
 * collide. Gauges that describe durable state are read from PostgreSQL and
 * Redis at scrape time, so every process reports the same truth.
 */
export interface Metrics {
  registry: Registry;
  smtpConnections: Counter<string>;
  smtpReplies: Counter<'code'>;
  smtpAcceptedBytes: Counter<string>;
  jobDuration: Histogram<'queue' | 'job' | 'outcome'>;
  outboundFailures: Counter<'kind' | 'permanent'>;
  inboundProcessed: Counter<'path'>;
}

/** `countCacheMs`: how long the table counts behind /metrics are reused (METRICS_CACHE_MS). */
export function createMetrics(deps: { db: Db; queues: Record<string, Queue>; countCacheMs: number }): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'replyline_process_' });
  const smtpConnections = new Counter({
    name: 'replyline_smtp_connections_total',
    help: 'SMTP connections accepted',
    registers: [registry],
  });
  const smtpReplies = new Counter({
    name: 'replyline_smtp_replies_total',
    help: 'Final SMTP replies to DATA, by reply code',
    labelNames: ['code'] as const,
    registers: [registry],
  });
  const smtpAcceptedBytes = new Counter({
    name: 'replyline_smtp_accepted_bytes_total',
    help: 'Bytes of messages answered 250',
    registers: [registry],
  });
  const jobDuration = new Histogram({
    name: 'replyline_job_duration_seconds',
    help: 'Job run time: inbound processing and outbound sending',
    labelNames: ['queue', 'job', 'outcome'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const outboundFailures = new Counter({
    name: 'replyline_outbound_failures_total',
    help: 'Outbound send attempts that failed, by mail kind and whether the failure is permanent',
    labelNames: ['kind', 'permanent'] as const,
    registers: [registry],
  });

  const inboundProcessed = new Counter({
    name: 'replyline_inbound_processed_total',
    help: 'Inbound messages decided, by path: rules (every message, alone or in a batch: decide.ts)',
    labelNames: ['path'] as const,
    registers: [registry],
  });

  new Gauge({
    name: 'replyline_queue_jobs',
    help: 'BullMQ jobs by queue and state',
    labelNames: ['queue', 'state'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const [name, queue] of Object.entries(deps.queues)) {
        try {
          const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'failed', 'completed');
          for (const [state, n] of Object.entries(counts)) this.set({ queue: name, state }, n);
        } catch {
          // Redis down: report nothing rather than failing the whole scrape.
        }
      }
    },
  });
  // Only the small, indexed slices of the tables: rows waiting or held, not the history.
  // /metrics may be open to anyone: the counts are reused for countCacheMs, and
  // concurrent scrapes share one query, so scraping in a loop cannot load the database.
  const countGauge = (name: string, help: string, query: CountQuery, label?: string) => {
    let cached: { at: number; rows: ReturnType<CountQuery> } | null = null;
    const rows = () => {
      if (!cached || Date.now() - cached.at > deps.countCacheMs) {
        const fresh = { at: Date.now(), rows: query(deps.db) };
        // A failed query is not cached: the next scrape tries again.
        fresh.rows.catch(() => {
          if (cached === fresh) cached = null;
        });
        cached = fresh;
      }
      return cached.rows;
    };
    return new Gauge({
      name,
      help,
      labelNames: label ? [label] : [],
      registers: [registry],
      async collect() {
        this.reset();
        const rows_ = await rows();
        if (!label) this.set(Number(rows_[0]?.n ?? 0));
        else for (const r of rows_) this.set({ [label]: r.label ?? '' }, Number(r.n));
      },
    });
  };
  countGauge('replyline_inbound_pending', 'Inbound messages stored but not yet processed', countPendingInbound);
  countGauge('replyline_inbound_held', 'Held inbound messages by reason', countHeldInboundByReason, 'reason');
  countGauge('replyline_outbound_queued', 'Outbox rows waiting to be sent', countQueuedOutbound);
  countGauge(
    'replyline_csat_ratings',
    'Satisfaction ratings of tickets, by rating (good, bad): the latest rating of each rated ticket',
    countCsatRatings,
    'rating',
  );
  countGauge('replyline_outbound_failed', 'Outbox rows that failed permanently, by mail kind', countFailedOutboundByKind, 'kind');

  return { registry, smtpConnections, smtpReplies, smtpAcceptedBytes, jobDuration, outboundFailures, inboundProcessed };
}
