import { SmtpClient } from '../../inbound/support/smtp.js';
import { header, parse, type RelaySink } from '../../outbound/support/relay-sink.js';
import { compose, type BuildOptions } from './rig.js';

/**
 * Loop partners for the mail-loop tests: an external auto-responder that
 * answers every mail we send to its addresses, and a relay that strips the
 * headers which mark mail as automatic (as some badly behaved gateways do).
 */

export type ResponderMode = 'dumb' | 'rfc3834';

export interface AutoResponder {
  /** Replies sent back to replyline, per responder address. */
  replies: Map<string, number>;
  /** Nothing received that is not yet answered, and no answer on the wire. */
  idle(): boolean;
  stop(): void;
}

/**
 * Watches the relay sink and, for every mail addressed to one of `responders`,
 * sends an "out of office" back to replyline's listener, to the mail's
 * Reply-To (what a mail client answers). A `dumb` responder looks like a
 * person (no automatic markers at all); an `rfc3834` one says Auto-Submitted.
 * With `dkim`, its replies are signed as its domain's mail server would.
 */
export function autoRespond(
  sink: RelaySink,
  targetPort: () => number,
  responders: Map<string, ResponderMode>,
  opts: { dkim?: (address: string) => BuildOptions['dkim'] } = {},
): AutoResponder {
  const replies = new Map<string, number>();
  // Only mail that arrives from now on: earlier mail to these addresses was not for this responder.
  let seen = sink.received.length;
  let busy = false;
  let stopped = false;
  const tick = async () => {
    if (busy || stopped) return;
    busy = true;
    try {
      while (seen < sink.received.length) {
        const mail = sink.received[seen++]!;
        const responder = mail.rcptTo.find((r) => responders.has(r));
        if (!responder) continue;
        const mode = responders.get(responder)!;
        const parsed = await parse(mail);
        const to = parsed.replyTo?.value[0]?.address ?? parsed.from?.value[0]?.address;
        if (!to) continue;
        const raw = await compose({
          from: responder,
          to,
          subject: `Out of office: ${parsed.subject ?? ''}`,
          text: 'I am out of the office until Monday and will read your message when I am back.',
          inReplyTo: header(mail, 'Message-ID'),
          references: header(mail, 'Message-ID') ? [header(mail, 'Message-ID')!] : undefined,
          headers: mode === 'rfc3834' ? { 'Auto-Submitted': 'auto-replied' } : {},
          dkim: opts.dkim?.(responder),
        });
        const client = await SmtpClient.connect(targetPort(), { name: 'mx.responder.test' });
        try {
          await client.send({ from: responder, to: [to] }, raw);
          replies.set(responder, (replies.get(responder) ?? 0) + 1);
        } catch {
          // Refused (e.g. a reply address we no longer accept): a real responder gives up too.
        } finally {
          client.close();
        }
      }
    } finally {
      busy = false;
    }
  };
  const timer = setInterval(() => void tick(), 50);
  return {
    replies,
    idle: () => !busy && seen === sink.received.length,
    stop() {
      stopped = true;
      clearInterval(timer);
    },
  };
}

export { startStrippingRelay } from '../../support/stripping-relay.js';
