/**
 * When the agent re-hashes a stored base against the digest recorded when it was stored (bit rot, tampering):
 * every `intervalMs` after its last verification (or its storing), and at once when its size or mtime is no
 * longer what was recorded (a write to a base is never ours: bases are read-only once stored). One base at a
 * time, the longest unverified first, so a node's disk is never read for two bases at once. Pure: the agent's
 * verifier gathers the facts and applies the plan (src/agent/verifier.ts).
 */

/** What the verifier knows of one base. */
export interface StoredBaseFacts {
  base: string;
  /** The base file now (lstat). */
  sizeBytes: number;
  mtimeMs: number;
  /** What the sidecar recorded; absent when it records no raw digest (stored before re-verification existed). */
  recorded?: {
    rawSha256: string;
    sizeBytes: number;
    mtimeMs: number;
    /** Last good verification, else when it was stored (ms since the epoch). */
    lastVerifiedAt: number;
  };
  /** Already found corrupt: nothing more to learn until it is removed and fetched again. */
  corrupt: boolean;
}

export type ReverifyWhy = "changed" | "due";

export interface ReverifyPlan {
  /** The bases to hash now, in order, each with why. */
  due: { base: string; why: ReverifyWhy }[];
  /** When the next base falls due, if any can. */
  nextInMs?: number;
}

/** Which bases to verify now, and when to look again; `intervalMs` <= 0 turns periodic checks off (changes still count). */
export function planReverify(bases: readonly StoredBaseFacts[], now: number, intervalMs: number): ReverifyPlan {
  const changed: { base: string; why: ReverifyWhy }[] = [];
  const due: { base: string; at: number }[] = [];
  let next: number | undefined;
  for (const b of bases) {
    const r = b.recorded;
    if (!r || b.corrupt) continue;
    if (b.sizeBytes !== r.sizeBytes || b.mtimeMs !== r.mtimeMs) {
      changed.push({ base: b.base, why: "changed" });
      continue;
    }
    if (intervalMs <= 0) continue;
    // A clock that went back counts the verification as just made: no storm of checks after a clock fix.
    const since = Math.max(0, now - r.lastVerifiedAt);
    if (since >= intervalMs) due.push({ base: b.base, at: r.lastVerifiedAt });
    else next = Math.min(next ?? Infinity, intervalMs - since);
  }
  due.sort((a, b) => a.at - b.at || (a.base < b.base ? -1 : a.base > b.base ? 1 : 0));
  changed.sort((a, b) => (a.base < b.base ? -1 : a.base > b.base ? 1 : 0));
  return { due: [...changed, ...due.map((d) => ({ base: d.base, why: "due" as const }))], ...(next !== undefined ? { nextInMs: next } : {}) };
}

/** What the agent says of a base that failed its re-verification, in status and Events: the digests and what happens next. */
export function corruptMessage(f: { path: string; expected: string; actual: string }): string {
  return `Base "${f.path}" no longer matches the digest recorded when it was stored (sha256 ${f.expected.slice(0, 12)}…, now ${f.actual.slice(0, 12)}…): new disks refuse it; it is removed and fetched again once no instance disk or pod uses it`;
}
