/**
 * An image's definition as one value: the parts of an ImageSpec that decide which bytes a node fetches (the
 * source, the checksum, the size limit by value). The controller uses it to find ids two ImageCaches define
 * differently, the agent to see a definition change (which cancels a fetch and retries a rejection), and both
 * stamp its hash on status entries, so a report on an older definition of an id is not counted for the new one.
 */
import { createHash } from "node:crypto";
import type { ImageSpec } from "./api-records.js";
import { parseByteQuantity } from "./quantity.js";

/**
 * A stable text that is equal for two definitions exactly when a node would fetch the same thing for both. A
 * checksumFrom counts with the keys the controller copied, so new keys in the ConfigMap are a new definition.
 */
export function definitionKey(image: ImageSpec): string {
  const source = "http" in image.source ? { http: image.source.http.url } : { registry: image.source.registry.image };
  const parts: unknown[] = [source, image.checksum ?? "", normalizedSize(image.maxVirtualSize)];
  // A verified registry image counts with its keys: new keys are a new definition (retried, re-verified).
  const verify = "registry" in image.source ? image.source.registry.verify : undefined;
  if (verify) parts.push({ verify: [`${verify.keys.configMapRef.name}/${verify.keys.configMapRef.key}`, verify.publicKeys ?? ""] });
  // Appended only when set, so the keys (and status hashes) of every other definition stay as they were.
  const from = image.checksumFrom;
  if (from) {
    const sig = from.signature;
    const ref = sig ? `${sig.keys.configMapRef.name}/${sig.keys.configMapRef.key}` : "";
    parts.push([from.url, from.name ?? "", from.algorithm ?? "", sig ? [sig.url ?? "", ref, sig.publicKeys ?? ""] : ""]);
  }
  // A tracked image: its interval, and on a node the version it is pinned to (each version is its own base).
  if (image.updatePolicy || image.version) parts.push({ interval: image.updatePolicy?.interval ?? "", version: image.version?.name ?? "" });
  return JSON.stringify(parts);
}

/** A short hash of definitionKey, carried in each status entry as `definition`. */
export function definitionHash(image: ImageSpec): string {
  return hashOfDefinitionKey(definitionKey(image));
}

/** definitionHash of a key already computed. */
export function hashOfDefinitionKey(key: string): string {
  return createHash("sha1").update(key, "utf8").digest("hex").slice(0, 16);
}

// "1Gi" and "1073741824" are one limit; a text that is no quantity (the CRD refuses it) stays itself.
function normalizedSize(text: string | undefined): string {
  if (text === undefined) return "";
  try {
    return String(parseByteQuantity(text));
  } catch {
    return `invalid:${text}`;
  }
}
