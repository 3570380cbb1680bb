import type { Config } from '../../config.js';
import type { Db } from '../../db/database.js';
import { addParticipant, countCcs, lockTicket, removeCc, setTicketStatus } from '../../db/queries/tickets.js';
import { ensureUser, findUserByEmail } from '../../db/queries/users.js';
import { isOurAddress, isValidEmail, normalizeEmail } from '../../mail/address.js';

/**
 * Staff reply commands, in the spirit of Zendesk's Mail API: lines at the
 * top of a staff reply starting with `#` act on the ticket and are removed
 * from the comment. Only the leading block counts, so a `#status` quoted or
 * written further down stays text.
 *
 *   #status solved|pending|open
 *   #note                         (the reply becomes an internal note)
 *   #cc add <address>   /   #cc remove <address>
 */
export interface StaffCommands {
  status?: 'solved' | 'pending' | 'open';
  note: boolean;
  ccAdd: string[];
  ccRemove: string[];
  body: string;
}

const STATUSES = new Set(['solved', 'pending', 'open']);
const COMMAND_RE = /^#(status|note|cc)\b:?\s*(.*)$/i;

export function parseStaffCommands(visibleText: string): StaffCommands {
  const cmds: StaffCommands = { note: false, ccAdd: [], ccRemove: [], body: '' };
  const lines = visibleText.replace(/\r\n?/g, '\n').split('\n');
  let i = 0;
  for (; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '') continue;
    const m = COMMAND_RE.exec(line);
    if (!m) break;
    const keyword = m[1]!.toLowerCase();
    const args = m[2]!.trim().split(/[\s,]+/).filter(Boolean);
    if (keyword === 'note') {
      cmds.note = true;
    } else if (keyword === 'status') {
      const value = args[0]?.toLowerCase();
      // A mistyped value is consumed, not published: the line was meant for us, not the customer.
      if (value && STATUSES.has(value)) cmds.status = value as StaffCommands['status'];
    } else {
      const action = args[0]?.toLowerCase();
      const addresses = args.slice(1).map((a) => normalizeEmail(a.replace(/^<|>$/g, ''))).filter(isValidEmail);
      if (action === 'add') cmds.ccAdd.push(...addresses);
      else if (action === 'remove' || action === 'delete') cmds.ccRemove.push(...addresses);
    }
  }
  cmds.ccAdd = [...new Set(cmds.ccAdd)];
  cmds.ccRemove = [...new Set(cmds.ccRemove)];
  cmds.body = lines.slice(i).join('\n').trim();
  return cmds;
}

/** Our own addresses must never become participants: they would mail themselves. */
/**
 * Applies status and CC changes inside the caller's transaction. A staff
 * reply to a `new` ticket without `#status` opens it: someone has answered.
 * A closed ticket is final and keeps its status; CCs beyond MAX_CCS are dropped.
 */
export async function applyStaffCommands(trx: Db, config: Config, ticketId: number, cmds: StaffCommands): Promise<void> {
  const ticket = await lockTicket(trx, ticketId);
  if (!ticket) return;

  if (ticket.status !== 'closed') {
    const next = cmds.status ?? (ticket.status === 'new' && !cmds.note ? 'open' : undefined);
    if (next && next !== ticket.status) await setTicketStatus(trx, ticketId, next);
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
