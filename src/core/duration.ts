/** Durations as ImageCache retention writes them: `24h`, `90m`, `1h30m`, `45s`, units in that order. */

const pattern = /^(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?$/;

/** The retention an ImageCache gets when it names none, as Nova's remove_unused_original_minimum_age_seconds. */
export const DefaultUnusedFor = "24h";

/**
 * Parses a duration such as `24h`, `90m` or `1h30m` into milliseconds.
 * @throws RangeError when the text is empty, has other units or is out of order, or exceeds Number.MAX_SAFE_INTEGER ms
 */
export function parseDuration(text: string): number {
  const m = pattern.exec(text);
  if (!m || text === "") throw new RangeError(`Cannot parse duration "${text}": expected hours, minutes and seconds such as 24h, 90m or 1h30m`);
  const [, h = "0", min = "0", s = "0"] = m;
  const ms = (Number(h) * 3600 + Number(min) * 60 + Number(s)) * 1000;
  if (!Number.isSafeInteger(ms)) throw new RangeError(`Cannot parse duration "${text}": too large`);
  return ms;
}

/** Formats whole seconds of `ms` canonically (`1h30m`, `45s`, `0s`); parseDuration(formatDuration(x)) is x rounded down to seconds. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`Cannot format duration ${ms}: expected a non-negative number of milliseconds`);
  let s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  const text = `${h ? `${h}h` : ""}${m ? `${m}m` : ""}${s ? `${s}s` : ""}`;
  return text || "0s";
}

/** Whether `text` is a duration parseDuration accepts. */
export function isDuration(text: string): boolean {
  return text !== "" && pattern.test(text);
}

/** Formats a duration in ms compactly for messages (`25h0m`, `3m20s`), truncated to seconds. */
export function formatAge(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${s % 60}s`;
  const h = Math.floor(m / 60);
  return `${h}h${m % 60}m`;
}
