import { readFileSync } from 'node:fs';
import { RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';
import { SMTPServer, type SMTPServerAddress, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import type { Config } from '../config.js';
import type { AppContext } from '../context.js';
import { AcceptBatcher } from './accept-batcher.js';
import { enqueueInboundAfterCommit } from '../jobs/enqueue-inbound.js';
import { parseBounceAddress, parseReplyAddress } from '../mail/tokens.js';
import { ipKey } from '../net/ip-key.js';
import { smtpReply as smtpError, toSmtpReply } from './smtp-replies.js';

/**
 * The SMTP edge. One small handler per protocol step; failures become
 * replies through this edge's own table (smtp-replies.ts), and smtp-server
 * writes them to the client. A `MAIL FROM … SIZE=` over the limit is
 * refused by smtp-server itself ("552 Error: message exceeds fixed maximum
 * message size"): the same 552 as our end-of-DATA check, in its words.
 * Nothing heavy happens here: we store the bytes and hand off to a job.
 */
export interface SmtpListener {
  server: SMTPServer;
  port: number;
  close(): Promise<void>;
}

/** A PEM value or a path to a PEM file. */
function pem(value: string): string {
  return value.includes('-----BEGIN') ? value : readFileSync(value, 'utf8');
}

function tlsOptions(config: Config): { key: string; cert: string } | null {
  if (!config.SMTP_TLS_KEY || !config.SMTP_TLS_CERT) return null;
  return { key: pem(config.SMTP_TLS_KEY), cert: pem(config.SMTP_TLS_CERT) };
}

/**
 * Per-client-IP limits, in process memory on purpose: accepting mail must
 * not depend on Redis. A limiter that itself fails lets the client through.
 */
function limiter(points: number) {
  const rl = new RateLimiterMemory({ points, duration: 60 });
  return async (ip: string): Promise<boolean> => {
    try {
      await rl.consume(ip);
      return true;
    } catch (res) {
      return !(res instanceof RateLimiterRes);
    }
  };
}

/** A support address, a signed reply address, or a signed return path (bounces of our mail come back to it). */
export function isOurRecipient(ctx: AppContext, address: string): boolean {
  const lower = address.trim().toLowerCase();
  const { SECRET_KEY, MAIL_DOMAIN } = ctx.config;
  if (ctx.config.SUPPORT_ADDRESSES.includes(lower)) return true;
  return parseReplyAddress(SECRET_KEY, MAIL_DOMAIN, lower) !== null || parseBounceAddress(SECRET_KEY, MAIL_DOMAIN, lower) !== null;
}

/** Reads the DATA stream into one Buffer, never decoding it: the stored bytes are exactly what arrived. */
function readStream(stream: SMTPServerDataStream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => {
      // Past the limit smtp-server keeps draining; stop buffering but keep reading.
      if (!stream.sizeExceeded) chunks.push(chunk);
    });
    stream.once('error', reject);
    stream.once('end', () => resolve(Buffer.concat(chunks)));
  });
}

export function createSmtpServer(ctx: AppContext): SMTPServer {
  const { config, log } = ctx;
  const batcher = new AcceptBatcher(ctx.db, (ids) => void enqueueInboundAfterCommit(ctx, ids));
  const allowConnection = limiter(config.SMTP_CONN_PER_IP_PER_MIN);
  const allowMessage = limiter(config.SMTP_MSG_PER_IP_PER_MIN);
  // Open sessions per client (IPv6: per /64): idle sessions cost a socket and
  // memory each, and the per-minute limit alone let one host keep hundreds open.
  const open = new Map<string, number>();
  /** session id → its key, for onClose (the session object may be replaced on STARTTLS; its id is not). */
  const counted = new Map<string, string>();

  const onConnect = (session: SMTPServerSession, callback: (err?: Error | null) => void) => {
    const key = ipKey(session.remoteAddress);
    if ((open.get(key) ?? 0) >= config.SMTP_SESSIONS_PER_IP) {
      log.warn({ ip: session.remoteAddress }, 'smtp open-session limit hit; answering 421');
      return callback(smtpError('SMTP_TOO_MANY_SESSIONS'));
    }
    open.set(key, (open.get(key) ?? 0) + 1);
    counted.set(session.id, key);
    allowConnection(key).then((ok) => {
      if (ok) {
        ctx.metrics.smtpConnections.inc();
        return callback();
      }
      log.warn({ ip: session.remoteAddress }, 'smtp connection rate limit hit; answering 421');
      callback(smtpError('SMTP_RATE_LIMITED_CONNECTIONS'));
    }, callback);
  };

  const onMailFrom = (_address: SMTPServerAddress, session: SMTPServerSession, callback: (err?: Error | null) => void) => {
    allowMessage(ipKey(session.remoteAddress)).then((ok) => {
      if (ok) return callback();
      log.warn({ ip: session.remoteAddress }, 'smtp message rate limit hit; answering 451');
      callback(smtpError('SMTP_RATE_LIMITED_MESSAGES'));
    }, callback);
  };

  const onRcptTo = (address: { address: string }, session: SMTPServerSession, callback: (err?: Error | null) => void) => {
    if (session.envelope.rcptTo.length >= config.SMTP_MAX_RECIPIENTS) return callback(smtpError('SMTP_TOO_MANY_RECIPIENTS'));
    if (!isOurRecipient(ctx, address.address)) return callback(smtpError('SMTP_UNKNOWN_RECIPIENT'));
    callback();
  };

  const onData = (stream: SMTPServerDataStream, session: SMTPServerSession, callback: (err?: Error | null, message?: string) => void) => {
    readStream(stream)
      .then(async (raw) => {
        if (stream.sizeExceeded) throw smtpError('SMTP_MESSAGE_TOO_BIG');
        let id: number;
        try {
          id = await batcher.insert(raw, {
            mailFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
            rcptTo: session.envelope.rcptTo.map((r) => r.address),
            clientAddress: session.remoteAddress,
            helo: session.hostNameAppearsAs ?? '',
            tls: Boolean(session.secure),
          });
        } catch (err) {
          log.error({ err, session: session.id }, 'could not store inbound message; answering 451');
          throw smtpError('SMTP_STORAGE_UNAVAILABLE');
        }
        // Committed: from here on the message is ours. Its job was enqueued with
        // its batch (best effort; the sweeper picks the row up if Redis is down).
        log.debug({ inboundId: id, size: raw.length }, 'inbound message stored');
        ctx.metrics.smtpReplies.inc({ code: '250' });
        ctx.metrics.smtpAcceptedBytes.inc(raw.length);
        callback(null, `2.0.0 Ok: queued as ${id}`);
      })
      .catch((err: unknown) => {
        const reply = toSmtpReply(err);
        if (reply !== err) log.error({ err }, 'unexpected error in DATA; answering 451');
        ctx.metrics.smtpReplies.inc({ code: String(reply.responseCode) });
        callback(reply);
      });
  };

  const tls = tlsOptions(config);

  const server = new SMTPServer({
    name: config.MAIL_DOMAIN,
    banner: 'replyline ESMTP',
    size: config.SMTP_MAX_SIZE,
    authOptional: true,
    disabledCommands: tls ? ['AUTH'] : ['AUTH', 'STARTTLS'],
    ...(tls ?? {}),
    disableReverseLookup: true,
    logger: false,
    onConnect,
    onClose: (session: SMTPServerSession) => {
      const key = counted.get(session.id);
      if (key === undefined) return;
      counted.delete(session.id);
      const n = (open.get(key) ?? 1) - 1;
      if (n <= 0) open.delete(key);
      else open.set(key, n);
    },
    onMailFrom,
    onRcptTo,
    onData,
  });
  server.on('error', (err) => log.error({ err }, 'smtp server error'));
  return server;
}

export async function startSmtpListener(
  ctx: AppContext,
  host = ctx.config.SMTP_LISTEN.host,
  port = ctx.config.SMTP_LISTEN.port,
): Promise<SmtpListener> {
  const server = createSmtpServer(ctx);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.server.address();
  const boundPort = typeof address === 'object' && address ? address.port : port;
  ctx.log.info({ host, port: boundPort }, 'smtp listening');
  return {
    server,
    port: boundPort,
    // smtp-server stops accepting at once and lets open sessions finish; after
    // its closeTimeout the rest are told 421 and dropped.
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
