import { SMTPServer } from 'smtp-server';

/**
 * The baseline for bench:inbound: a bare smtp-server with the same protocol
 * options as replyline's listener that only drains each message and answers
 * 250. Run as its own process so its RSS and CPU are its own.
 */
const server = new SMTPServer({
  banner: 'bare sink',
  size: 25 * 1024 * 1024,
  authOptional: true,
  disabledCommands: ['AUTH', 'STARTTLS'],
  disableReverseLookup: true,
  logger: false,
  onData(stream, _session, callback) {
    stream.on('data', () => {});
    stream.on('end', () => callback(null, 'Ok: drained'));
  },
});
server.listen(0, '127.0.0.1', () => {
  const address = server.server.address();
  process.stdout.write(`${JSON.stringify({ msg: 'sink listening', port: typeof address === 'object' && address ? address.port : 0 })}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
