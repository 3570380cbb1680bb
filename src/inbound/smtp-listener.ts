import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import type { AppContext } from '../context.js';
import { insertInboundMessage } from '../db/queries/inbound-messages.js';
import { AppError } from '../errors.js';
import { enqueueInbound } from '../jobs/process-inbound.js';
import { parseReplyAddress } from '../mail/tokens.js';

/**
 * The SMTP edge. One small handler per protocol step; domain errors carry
 * their SMTP responseCode and smtp-server writes them to the client.
 * Nothing heavy happens here: we store the bytes and hand off to a job.
 */
export interface SmtpListener {
  server: SMTPServer;
  port: number;
  close(): Promise<void>;
}

function smtpError(code: ConstructorParameters<typeof AppError>[0]): AppError {
  return new AppError(code);
}

export function isOurRecipient(ctx: AppContext, address: string): boolean {
  const lower = address.trim().toLowerCase();
  if (ctx.config.SUPPORT_ADDRESSES.includes(lower)) return true;
  return parseReplyAddress(ctx.config.SECRET_KEY, ctx.config.MAIL_DOMAIN, lower) !== null;
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

  const onRcptTo = (
    address: { address: string },
    session: SMTPServerSession,
    callback: (err?: Error | null) => void,
  ) => {
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
          id = await insertInboundMessage(ctx.db, raw, {
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
        // Committed: from here on the message is ours. Enqueueing is best effort;
        // the sweeper picks the row up if Redis is down right now.
        enqueueInbound(ctx, id).catch((err) => log.warn({ err, inboundId: id }, 'enqueue failed; sweeper will retry'));
        log.debug({ inboundId: id, size: raw.length }, 'inbound message stored');
        callback(null, `2.0.0 Ok: queued as ${id}`);
      })
      .catch((err: unknown) => {
        if (err instanceof AppError) return callback(err);
        log.error({ err }, 'unexpected error in DATA; answering 451');
        callback(smtpError('SMTP_STORAGE_UNAVAILABLE'));
      });
  };

  const tls = config.SMTP_TLS_KEY && config.SMTP_TLS_CERT ? { key: config.SMTP_TLS_KEY, cert: config.SMTP_TLS_CERT } : null;

  const server = new SMTPServer({
    name: config.MAIL_DOMAIN,
    banner: 'replyline ESMTP',
    size: config.SMTP_MAX_SIZE,
    authOptional: true,
    disabledCommands: tls ? ['AUTH'] : ['AUTH', 'STARTTLS'],
    ...(tls ?? {}),
    disableReverseLookup: true,
    logger: false,
    onRcptTo,
    onData,
  });
  server.on('error', (err) => log.error({ err }, 'smtp server error'));
  return server;
}

export async function startSmtpListener(ctx: AppContext, host = ctx.config.SMTP_LISTEN.host, port = ctx.config.SMTP_LISTEN.port): Promise<SmtpListener> {
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
