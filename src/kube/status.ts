/**
 * Status writes that happen only on change: the wanted status is compared with the stored one (key order
 * ignored, undefined fields dropped) and written, whole, only when they differ.
 */
import { isDeepStrictEqual } from "node:util";
import type { ClusterResource } from "./client.js";

/** `value` as the API server would store it: JSON round trip, so undefined fields vanish. */
export function normalizeJson<T>(value: T): T {
  return value === undefined ? value : (JSON.parse(JSON.stringify(value)) as T);
}

/** Whether writing `wanted` over `current` would change anything. */
export function statusDiffers(current: unknown, wanted: unknown): boolean {
  return !isDeepStrictEqual(normalizeJson(current ?? {}), normalizeJson(wanted ?? {}));
}

/**
 * Replaces the status subresource of `name` with `wanted` if it differs from `current` (the cached object's
 * status). Resolves true when it wrote.
 */
export async function writeStatusIfChanged(resource: ClusterResource, name: string, current: unknown, wanted: object, fieldManager: string): Promise<boolean> {
  if (!statusDiffers(current, wanted)) return false;
  await resource.replaceStatus(name, normalizeJson(wanted), fieldManager);
  return true;
}
