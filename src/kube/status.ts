/**
 * Status is written only on change: the wanted status is compared with the stored one (key order ignored,
 * undefined fields dropped); the controller's roll-up and the agent's status writer write it, whole, only
 * when they differ.
 */
import { isDeepStrictEqual } from "node:util";
import { normalizeJson } from "../core/json.js";

export { normalizeJson };

/** Whether writing `wanted` over `current` would change anything. */
export function statusDiffers(current: unknown, wanted: unknown): boolean {
  return !isDeepStrictEqual(normalizeJson(current ?? {}), normalizeJson(wanted ?? {}));
}
