import type { Config } from '../../config.js';
import type { Db, TicketPriority } from '../../db/database.js';
import { addParticipant, countCcs, removeCc } from '../../db/queries/ticket-participants.js';
import { lockTicket, setTicketAssignee, setTicketPriority, setTicketStatus } from '../../db/queries/tickets.js';
import { ensureUser, findUserByEmail } from '../../db/queries/users.js';
import { isOurAddress, isValidEmail, normalizeEmail } from '../../core/address.js';

/**
 * Staff reply commands, in the spirit of Zendesk's Mail API: lines at the
 * top of a staff reply starting with `#` act on the ticket and are removed
 * from the comment. Only the leading block counts, so a `#status` quoted or
 * written further down stays text.
 *
 *   #status solved|pending|open|on-hold
 *   #priority low|normal|high|urgent
 *   #assign me   /   #assign <staff address>   /   #unassign
 *   #note                         (the reply becomes an internal note)
 *   #cc add <address>   /   #cc remove <address>
 *   #send                         (force out this agent's replies held as `collision`)
 */
export interface StaffCommands {
  status?: 'solved' | 'pending' | 'open' | 'hold';
  priority?: TicketPriority;
  /** 'me': the author; an address: that staff account; null: nobody. */
  assign?: 'me' | string | null;
  note: boolean;
  /** Release this agent's replies on the ticket that were held as a collision, and never hold this one. */
  send: boolean;
  ccAdd: string[];
  ccRemove: string[];
  body: string;
}

/** Command words for each status; on-hold is Zendesk's "waiting on a third party" (customers see it as open). */
const STATUSES: Record<string, NonNullable<StaffCommands['status']>> = {
  solved: 'solved',
  pending: 'pending',
  open: 'open',
  'on-hold': 'hold',
  onhold: 'hold',
  hold: 'hold',
};
const PRIORITIES = new Set<string>(['low', 'normal', 'high', 'urgent']);
const COMMAND_RE = /^#(status|note|cc|assign|unassign|priority|send)\b:?\s*(.*)$/i;

export function parseStaffCommands(visibleText: string): StaffCommands {
  const cmds: StaffCommands = { note: false, send: false, ccAdd: [], ccRemove: [], body: '' };
  const lines = visibleText.replace(/\r\n?/g, '\n').split('\n');
  let i = 0;
  for (; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '') continue;
    const m = COMMAND_RE.exec(line);
    if (!m) break;
    const keyword = m[1]!.toLowerCase();
    const args = m[2]!
      .trim()
      .split(/[\s,]+/)
      .filter(Boolean);
    const value = args[0]?.toLowerCase();
    // A mistyped value is consumed, not published: the line was meant for us, not the customer.
    if (keyword === 'note') {
      cmds.note = true;
    } else if (keyword === 'send') {
      cmds.send = true;
    } else if (keyword === 'status') {
      if (value && Object.hasOwn(STATUSES, value)) cmds.status = STATUSES[value];
    } else if (keyword === 'priority') {
      if (value && PRIORITIES.has(value)) cmds.priority = value as TicketPriority;
    } else if (keyword === 'unassign') {
      cmds.assign = null;
    } else if (keyword === 'assign') {
      const address = value ? normalizeEmail(value.replace(/^<|>$/g, '')) : '';
      if (value === 'me') cmds.assign = 'me';
      else if (isValidEmail(address)) cmds.assign = address;
    } else {
      const action = args[0]?.toLowerCase();
      const addresses = args
        .slice(1)
        .map((a) => normalizeEmail(a.replace(/^<|>$/g, '')))
        .filter(isValidEmail);
      if (action === 'add') cmds.ccAdd.push(...addresses);
      else if (action === 'remove' || action === 'delete') cmds.ccRemove.push(...addresses);
    }
  }
  cmds.ccAdd = [...new Set(cmds.ccAdd)];
  cmds.ccRemove = [...new Set(cmds.ccRemove)];
  cmds.body = lines.slice(i).join('\n').trim();
  return cmds;
}

/** Who wrote the commands, and whether their mail became a public reply (for AUTO_ASSIGN_FIRST_REPLIER). */
export interface CommandAuthor {
  id: number;
  publicReply: boolean;
}

/**
 * Applies status, priority, assignee and CC changes inside the caller's
 * transaction. A staff reply to a `new` ticket without `#status` opens it:
 * someone has answered. A closed ticket is final and keeps its status; CCs
 * beyond MAX_CCS are dropped; our own addresses never become participants
 * (they would mail themselves). Only a staff account can be the assignee.
 */
export async function applyStaffCommands(
  trx: Db,
  config: Config,
  ticketId: number,
  cmds: StaffCommands,
  author?: CommandAuthor,
): Promise<void> {
  const ticket = await lockTicket(trx, ticketId);
  if (!ticket) return;

  if (ticket.status !== 'closed') {
    const next = cmds.status ?? (ticket.status === 'new' && !cmds.note ? 'open' : undefined);
    if (next && next !== ticket.status) await setTicketStatus(trx, ticketId, next);
  }
  if (cmds.priority && cmds.priority !== ticket.priority) await setTicketPriority(trx, ticketId, cmds.priority);

  if (cmds.assign !== undefined) {
    let assignee: number | null = null;
    if (cmds.assign === 'me') assignee = author?.id ?? null;
    else if (cmds.assign !== null) {
      const user = await findUserByEmail(trx, cmds.assign);
      assignee = user?.role === 'staff' ? user.id : ticket.assignee_id;
    }
    if (assignee !== ticket.assignee_id) await setTicketAssignee(trx, ticketId, assignee);
  } else if (author?.publicReply && ticket.assignee_id === null && config.AUTO_ASSIGN_FIRST_REPLIER) {
    // Zendesk's habit: whoever answers the customer first owns the ticket.
    await setTicketAssignee(trx, ticketId, author.id);
  }

  for (const email of cmds.ccRemove) {
    const user = await findUserByEmail(trx, email);
    if (user) await removeCc(trx, ticketId, user.id);
  }

  let ccs = await countCcs(trx, ticketId);
  for (const email of cmds.ccAdd) {
    if (isOurAddress(config, email) || ccs >= config.MAX_CCS) continue;
    const { user } = await ensureUser(trx, { email, locale: config.DEFAULT_LOCALE });
    if (await addParticipant(trx, ticketId, user.id, 'cc')) ccs++;
  }
}
