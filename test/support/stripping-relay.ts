import nodemailer from 'nodemailer';
import { SMTPServer } from 'smtp-server';

/** A relay that drops Auto-Submitted, Precedence, X-Auto-Response-Suppress and our loop header, then forwards. */
export async function startStrippingRelay(targetPort: number): Promise<{ port: number; url: string; stop(): Promise<void> }> {
  const forward = nodemailer.createTransport({ host: '127.0.0.1', port: targetPort, ignoreTLS: true });
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    logger: false,
    closeTimeout: 100,
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const raw = Buffer.concat(chunks).toString('latin1');
        const split = raw.indexOf('\r\n\r\n');
        const headers = raw
          .slice(0, split)
          .replace(/\r\n[ \t]+/g, ' ')
          .split('\r\n')
          .filter((l) => !/^(auto-submitted|x-auto-response-suppress|x-replyline-loop|precedence):/i.test(l))
          .join('\r\n');
        forward
          .sendMail({
            envelope: {
              from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
              to: session.envelope.rcptTo.map((r) => r.address),
            },
            raw: Buffer.from(headers + raw.slice(split), 'latin1'),
          })
          .then(
            () => callback(),
            (err: Error) => callback(err),
          );
      });
    },
  });
  const port = await new Promise<number>((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.server.address() as { port: number }).port)),
  );
  return {
    port,
    url: `smtp://127.0.0.1:${port}`,
    stop: () =>
      new Promise<void>((resolve) =>
        server.close(() => {
          forward.close();
          resolve();
        }),
      ),
  };
}
