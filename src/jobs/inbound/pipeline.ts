import type { AppContext } from '../../context.js';

// Placeholder while the inbound workstream lands.
export async function processInboundMessage(_ctx: AppContext, _inboundId: number): Promise<void> {
  throw new Error('processInboundMessage: not implemented yet');
}
