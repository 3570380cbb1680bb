import type { AppContext } from '../../context.js';

// Placeholder while the outbound workstream lands.
export async function deliverOutboundMail(_ctx: AppContext, _outboundId: number): Promise<void> {
  throw new Error('deliverOutboundMail: not implemented yet');
}
