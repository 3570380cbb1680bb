import { describe, expect, it } from 'vitest';
import type { UserRef } from '../../src/db/queries/users.js';
import { makeMessageId, makeReplyAddress, makeTicketTag } from '../../src/mail/tokens.js';
import type { AnalyzedMessage } from '../../src/jobs/inbound/analyze.js';
import { decide, type DecideConfig, type MessageFacts, type Plan, type TicketFacts } from '../../src/jobs/inbound/decide.js';

/**
 * Every inbound rule, without a database: decide() is pure, so each rule is
 * a table of facts in and a plan out.
 */

const SECRET = 'decide-test-secret-0123456789abcdef0123456789';
const cfg: DecideConfig = {
  SUPPORT_ADDRESSES: ['support@help.test'],
  MAIL_DOMAIN: 'help.test',
  SECRET_KEY: SECRET,
  DEFAULT_LOCALE: 'en',
  REGISTRATION: 'open',
  MAX_CCS: 2,
  STAFF_AUTH: 'dmarc',
  COLLISION_WINDOW: 120_000,
  SENDER_BREAKER_MAX: 3,
  SENDER_BREAKER_WINDOW_MS: 60_000,
  SENDER_DAILY_BYTES: 1_000_000,
};
const closed: DecideConfig = { ...cfg, REGISTRATION: 'closed' };

const PASS = { ok: true, method: 'dmarc' as const, reason: 'dmarc=pass' };
const FAIL = { ok: false, method: null, reason: 'dmarc=fail' };

const carol: UserRef = { id: 10, email: 'carol@customer.example', role: 'customer', locale: 'en' };
const agent: UserRef = { id: 20, email: 'agent@staff.example', role: 'staff', locale: 'en' };

function mail(over: Partial<AnalyzedMessage> = {}): AnalyzedMessage {
  return {
    messageId: '<m1@customer.example>',
    inReplyTo: [],
    references: [],
    subject: 'Printer',
    from: { name: 'Carol', address: carol.email },
    fromInvalid: false,
    fromHeaderAddress: carol.email,
    to: [{ name: '', address: 'support@help.test' }],
    cc: [],
    text: 'It jams.',
    visibleText: 'It jams.',
    visibleHtml: '<p>It jams.</p>',
    originalHtml: null,
    attachments: [],
    omittedAttachments: [],
    machine: null,
    dsn: null,
    japanese: false,
    sha256: 'x',
    senderAuth: PASS,
    ...over,
  };
}

function facts(over: Partial<MessageFacts> = {}): MessageFacts {
  return {
    duplicateOf: null,
    paused: null,
    recent: 0,
    bytesToday: 100,
    sender: carol,
    thread: { existing: new Set(), takesPart: new Set(), stored: null },
    ticket: null,
    withoutAccount: new Set(),
    collisionWith: null,
    bounce: null,
    ...over,
  };
}

function ticket(id: number, over: Partial<TicketFacts> = {}): TicketFacts {
  return { id, status: 'open', participants: [{ userId: carol.id, role: 'requester', email: carol.email }], ...over };
}

const run = (a: AnalyzedMessage, f: MessageFacts, c: DecideConfig = cfg, overrides: string[] = [], rcptTo = ['support@help.test']): Plan =>
  decide(c, f, {
    row: {
      id: 1,
      raw: Buffer.alloc(0),
      mail_from: '',
      rcpt_to: rcptTo,
      client_address: '127.0.0.1',
      helo: 'x',
      release_overrides: overrides,
    },
    a,
  });

const held = (p: Plan) => (p.kind === 'hold' ? `${p.reason}` : p.kind);
const replyTo = (ticketId: number, userId: number) => makeReplyAddress(SECRET, 'support', 'help.test', { ticketId, userId });

describe('decide', () => {
  it('a plain first mail becomes a new ticket; an unknown sender gets an implicit account (ja when the text is Japanese)', () => {
    expect(run(mail(), facts())).toMatchObject({
      kind: 'new_ticket',
      sender: { kind: 'existing', user: carol },
      ccs: [],
      followUpOf: null,
    });
    expect(run(mail({ japanese: true }), facts({ sender: null }))).toMatchObject({
      kind: 'new_ticket',
      sender: { kind: 'create', user: { email: carol.email, name: 'Carol', locale: 'ja' } },
    });
  });

  it('a re-delivery is a duplicate of the ticket its twin opened', () => {
    expect(run(mail(), facts({ duplicateOf: { inboundId: 5, ticketId: 7 } }))).toMatchObject({ kind: 'duplicate', ticketId: 7 });
  });

  it('machine mail is held by its kind unless released; a bounce names the mails it marks failed', () => {
    expect(run(mail({ machine: { kind: 'auto_reply', rule: 'Auto-Submitted' } }), facts())).toMatchObject({
      kind: 'hold',
      reason: 'auto_reply',
      detail: 'Auto-Submitted',
    });
    expect(held(run(mail({ machine: { kind: 'auto_reply', rule: 'x' } }), facts(), cfg, ['auto_reply']))).toBe('new_ticket');
    const bounce = mail({ machine: { kind: 'bounce', rule: 'DSN' } });
    expect(run(bounce, facts({ bounce: { outboundIds: [3, 4], diagnostic: '550' } }))).toMatchObject({
      reason: 'bounce',
      detail: 'DSN; outbound mail 3, 4 marked failed',
      effect: { kind: 'bounce', outboundIds: [3, 4], diagnostic: '550' },
    });
    expect(run(bounce, facts({ bounce: { outboundIds: [], diagnostic: '550' } }))).toMatchObject({
      detail: 'DSN; no outbound mail of ours matched',
      effect: null,
    });
  });

  it('holds mail without a usable From, and our own mail', () => {
    expect(run(mail({ from: null, fromHeaderAddress: null }), facts())).toMatchObject({
      reason: 'invalid_sender',
      detail: 'no From header',
    });
    expect(run(mail({ from: null, fromHeaderAddress: 'junk' }), facts(), cfg, ['invalid_sender'])).toMatchObject({
      reason: 'invalid_sender',
      detail: 'unusable From address "junk"',
    });
    expect(held(run(mail({ from: { name: '', address: 'support@help.test' } }), facts({ sender: null })))).toBe('own_mail');
  });

  it('the sender breaker and the daily quota hold, unless released', () => {
    expect(run(mail(), facts({ recent: 3 }))).toMatchObject({ reason: 'loop', detail: '4 messages in 60s (max 3)' });
    expect(run(mail(), facts({ paused: 9 }))).toMatchObject({ reason: 'loop', detail: expect.stringContaining('message 9') });
    expect(held(run(mail(), facts({ recent: 3 }), cfg, ['loop']))).toBe('new_ticket');
    expect(held(run(mail(), facts({ bytesToday: 2_000_000 })))).toBe('sender_quota');
    expect(held(run(mail(), facts({ bytesToday: 2_000_000 }), cfg, ['sender_quota']))).toBe('new_ticket');
  });

  it('closed registration holds unknown senders and unknown CCs', () => {
    expect(run(mail(), facts({ sender: null }), closed)).toMatchObject({ reason: 'unknown_sender', sender: null });
    const cc = mail({ cc: [{ name: 'Dan', address: 'dan@customer.example' }] });
    expect(run(cc, facts({ withoutAccount: new Set(['dan@customer.example']) }), closed)).toMatchObject({
      reason: 'unknown_cc',
      detail: 'no account: dan@customer.example',
    });
    expect(run(cc, facts({ withoutAccount: new Set() }), closed)).toMatchObject({
      kind: 'new_ticket',
      ccs: [{ email: 'dan@customer.example' }],
    });
  });

  it('new CCs need an authenticated From, and at most MAX_CCS of them', () => {
    const cc = (n: number, over: Partial<AnalyzedMessage> = {}) =>
      mail({ cc: Array.from({ length: n }, (_, i) => ({ name: '', address: `cc${i}@customer.example` })), ...over });
    expect(run(cc(3), facts())).toMatchObject({ reason: 'cc_limit', detail: '3 CC addresses (max 2)' });
    expect(held(run(cc(3), facts(), cfg, ['cc_limit']))).toBe('new_ticket');
    expect(run(cc(1, { senderAuth: FAIL }), facts())).toMatchObject({
      reason: 'sender_unverified',
      detail: expect.stringContaining('dmarc=fail'),
    });
    expect(run(cc(1, { senderAuth: undefined }), facts({ sender: null }))).toMatchObject({
      reason: 'sender_unverified',
      // The rules reached the sender: the implicit account is still created, as before.
      sender: { kind: 'create' },
    });
  });

  it('threads by the sender’s own reply address; someone else’s evidence is held', () => {
    const to = [{ name: '', address: replyTo(7, carol.id) }];
    const existing = new Set([7]);
    expect(run(mail({ to }), facts({ thread: { existing, takesPart: new Set(), stored: null }, ticket: ticket(7) }))).toMatchObject({
      kind: 'customer_reply',
      ticket: { id: 7, status: 'open' },
    });
    // A reply address of a ticket that does not exist proves nothing: a new ticket.
    expect(held(run(mail({ to }), facts()))).toBe('new_ticket');
    const other = [{ name: '', address: replyTo(7, 99) }];
    const t = { existing, takesPart: new Set<number>(), stored: null };
    expect(run(mail({ to: other }), facts({ thread: t, ticket: ticket(7, { participants: [] }) }))).toMatchObject({
      reason: 'not_participant',
      detail: 'ticket 7 (matched by reply_address)',
      ticketId: 7,
    });
    expect(run(mail({ to: other }), facts({ thread: t, ticket: ticket(7) }))).toMatchObject({ reason: 'unbound_evidence', ticketId: 7 });
    expect(held(run(mail({ to: other }), facts({ thread: t, ticket: ticket(7) }), cfg, ['unbound_evidence']))).toBe('customer_reply');
  });

  it('threads by a stored Message-ID, our own signed Message-ID and a body tag', () => {
    const stored = { existing: new Set<number>(), takesPart: new Set<number>(), stored: { ticketId: 8, tied: true } };
    expect(run(mail({ inReplyTo: ['x@y'] }), facts({ thread: stored, ticket: ticket(8) }))).toMatchObject({ kind: 'customer_reply' });
    const ours = makeMessageId(SECRET, 'help.test', 9);
    const oursFacts = { existing: new Set([9]), takesPart: new Set<number>(), stored: null };
    expect(run(mail({ references: [ours] }), facts({ thread: oursFacts, ticket: ticket(9) }))).toMatchObject({
      reason: 'unbound_evidence',
      detail: 'ticket 9 matched by a message_id issued to someone else',
    });
    const tag = `see ${makeTicketTag(SECRET, 11)}`;
    expect(
      run(mail({ text: tag }), facts({ thread: { existing: new Set([11]), takesPart: new Set([11]), stored: null }, ticket: ticket(11) })),
    ).toMatchObject({ kind: 'customer_reply', ticket: { id: 11 } });
  });

  it('a reply to a closed ticket opens a follow-up; a solved one is reopened by the reply', () => {
    const to = [{ name: '', address: replyTo(7, carol.id) }];
    const thread = { existing: new Set([7]), takesPart: new Set<number>(), stored: null };
    expect(run(mail({ to }), facts({ thread, ticket: ticket(7, { status: 'closed' }) }))).toMatchObject({
      kind: 'new_ticket',
      followUpOf: 7,
    });
    expect(run(mail({ to }), facts({ thread, ticket: ticket(7, { status: 'solved' }) }))).toMatchObject({
      kind: 'customer_reply',
      ticket: { status: 'solved' },
    });
  });

  it('a reply adds only CCs who are not participants yet, within MAX_CCS', () => {
    const to = [{ name: '', address: replyTo(7, carol.id) }];
    const thread = { existing: new Set([7]), takesPart: new Set<number>(), stored: null };
    const t = ticket(7, {
      participants: [
        { userId: carol.id, role: 'requester', email: carol.email },
        { userId: 30, role: 'cc', email: 'old@customer.example' },
      ],
    });
    const cc = [
      { name: '', address: 'old@customer.example' },
      { name: 'New', address: 'new@customer.example' },
    ];
    expect(run(mail({ to, cc }), facts({ thread, ticket: t }))).toMatchObject({
      kind: 'customer_reply',
      ccs: [{ email: 'new@customer.example', name: 'New' }],
    });
    const more = [...cc, { name: '', address: 'more@customer.example' }];
    expect(run(mail({ to, cc: more }), facts({ thread, ticket: t }))).toMatchObject({
      reason: 'cc_limit',
      detail: '2 new CC addresses would exceed MAX_CCS=2',
      ticketId: 7,
    });
  });

  it('staff mail counts as staff only when authenticated; the verdict is kept and a failure sends a notice', () => {
    const from = { name: 'Agent', address: agent.email };
    expect(run(mail({ from }), facts({ sender: agent }))).toMatchObject({ kind: 'new_ticket', staffAuth: PASS });
    expect(run(mail({ from, senderAuth: FAIL }), facts({ sender: agent }))).toMatchObject({
      reason: 'auth_failed',
      detail: 'dmarc=fail',
      staffAuth: FAIL,
      effect: { kind: 'staff_auth_notice', staff: { id: agent.id, email: agent.email }, auth: FAIL },
    });
    expect(run(mail({ from, senderAuth: FAIL }), facts({ sender: agent }), cfg, ['auth_failed'])).toMatchObject({
      kind: 'new_ticket',
      staffAuth: null,
    });
    // Token mode: the staff member's own reply address is the proof.
    const token = { ...cfg, STAFF_AUTH: 'token' as const };
    const thread = { existing: new Set([7]), takesPart: new Set<number>(), stored: null };
    const own = [{ name: '', address: replyTo(7, agent.id) }];
    expect(run(mail({ from, to: own, senderAuth: FAIL }), facts({ sender: agent, thread, ticket: ticket(7) }), token)).toMatchObject({
      kind: 'staff_reply',
      staffAuth: { ok: true, method: 'token' },
    });
    const others = [{ name: '', address: replyTo(7, carol.id) }];
    expect(run(mail({ from, to: others }), facts({ sender: agent, thread, ticket: ticket(7) }), token)).toMatchObject({
      reason: 'auth_failed',
      detail: 'reply token belongs to another user',
    });
  });

  it('staff replies: commands, notes, closed tickets and collisions', () => {
    const from = { name: 'Agent', address: agent.email };
    const to = [{ name: '', address: replyTo(7, agent.id) }];
    const thread = { existing: new Set([7]), takesPart: new Set<number>(), stored: null };
    const f = (over: Partial<MessageFacts> = {}) => facts({ sender: agent, thread, ticket: ticket(7), ...over });
    const staffMail = (text: string) => mail({ from, to, visibleText: text });

    expect(run(staffMail('Fixed.'), f())).toMatchObject({
      kind: 'staff_reply',
      ticketId: 7,
      message: { visibility: 'public', bodyText: 'Fixed.', bodyHtml: '<p>It jams.</p>' },
    });
    expect(run(staffMail('#note\n#status pending\nInternal.'), f())).toMatchObject({
      commands: { note: true, status: 'pending' },
      message: { visibility: 'internal', bodyText: 'Internal.', bodyHtml: null },
    });
    expect(run(staffMail('#status solved'), f())).toMatchObject({ kind: 'staff_reply', message: null, commands: { status: 'solved' } });
    expect(run(staffMail('Fixed.'), f({ ticket: ticket(7, { status: 'closed' }) }))).toMatchObject({
      reason: 'ticket_closed',
      staffAuth: PASS,
    });
    expect(run(staffMail('Fixed.'), f({ collisionWith: 44 }))).toMatchObject({
      reason: 'collision',
      ticketId: 7,
      effect: { kind: 'collision_notice', ticketId: 7, authorId: agent.id, otherMessageId: 44 },
    });
    // #send forces it, a note never collides, and COLLISION_WINDOW=off turns the rule off.
    expect(held(run(staffMail('#send\nFixed.'), f({ collisionWith: 44 })))).toBe('staff_reply');
    expect(held(run(staffMail('#note\nFYI'), f({ collisionWith: 44 })))).toBe('staff_reply');
    expect(held(run(staffMail('Fixed.'), f({ collisionWith: 44 }), { ...cfg, COLLISION_WINDOW: null }))).toBe('staff_reply');
    expect(held(run(staffMail('Fixed.'), f({ collisionWith: 44 }), cfg, ['collision']))).toBe('staff_reply');
  });

  it('is pure: the same facts give the same plan, and nothing is changed', () => {
    const a = mail({ cc: [{ name: '', address: 'dan@customer.example' }] });
    const f = facts();
    const snapshot = JSON.stringify({ a, f: { ...f, withoutAccount: [...f.withoutAccount] } });
    expect(run(a, f)).toEqual(run(a, f));
    expect(JSON.stringify({ a, f: { ...f, withoutAccount: [...f.withoutAccount] } })).toBe(snapshot);
  });
});
