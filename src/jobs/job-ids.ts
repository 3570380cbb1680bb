/**
 * Job ids derived from database rows: re-enqueueing the same row (sweeper,
 * retries after a Redis outage) can never create a second live job for it.
 */
export const inboundJobId = (inboundId: number) => `inbound-${inboundId}`;
export const outboundJobId = (outboundId: number) => `outbound-${outboundId}`;
