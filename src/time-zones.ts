/**
 * The IANA zones the portal offers and accepts: what this Node's ICU knows,
 * plus UTC (not every ICU lists it). A user's zone is checked against this
 * list, never passed to Intl unchecked.
 */
export const TIME_ZONES: readonly string[] = Object.freeze([...new Set(['UTC', ...Intl.supportedValuesOf('timeZone')])]);

const KNOWN = new Set(TIME_ZONES);

export function isTimeZone(value: unknown): value is string {
  return typeof value === 'string' && KNOWN.has(value);
}

/** The zone times are shown in for a user: their own choice, else the installation's default. */
export function timeZoneFor(user: { time_zone: string | null } | null, fallback: string): string {
  return user?.time_zone && isTimeZone(user.time_zone) ? user.time_zone : fallback;
}
