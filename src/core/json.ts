/** JSON as the API server stores it. */

/** `value` as the API server would store it: a JSON round trip, so undefined fields vanish. */
export function normalizeJson<T>(value: T): T {
  return value === undefined ? value : (JSON.parse(JSON.stringify(value)) as T);
}
