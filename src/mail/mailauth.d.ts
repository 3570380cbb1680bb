// mailauth ships no types; only the parts replyline reads are declared here.
declare module 'mailauth' {
  export type DnsResolver = (name: string, rrtype: string) => Promise<unknown>;

  export interface AuthStatus {
    result: string;
    comment?: string;
    aligned?: string | false;
    underSized?: number;
  }

  export interface DkimSignatureResult {
    signingDomain?: string;
    selector?: string;
    status: AuthStatus;
    info?: string;
  }

  export interface AuthenticateOptions {
    ip?: string;
    helo?: string;
    sender?: string;
    mta?: string;
    resolver?: DnsResolver;
    trustReceived?: boolean;
    minBitLength?: number;
    disableArc?: boolean;
    disableDmarc?: boolean;
    disableBimi?: boolean;
  }

  export interface AuthenticateResult {
    dkim: { headerFrom?: string[]; envelopeFrom?: string | false; results: DkimSignatureResult[] };
    spf: { domain?: string; 'client-ip'?: string; status: AuthStatus; info?: string } | false;
    dmarc: { domain?: string; policy?: string; status: AuthStatus; info?: string; alignment?: unknown } | false;
    arc: unknown;
    bimi: unknown;
    headers: string;
  }

  export function authenticate(input: Buffer | string, opts: AuthenticateOptions): Promise<AuthenticateResult>;
}
