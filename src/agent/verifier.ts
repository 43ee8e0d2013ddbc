/**
 * The agent's re-verification of stored bases: every interval (and at once when a base's size or mtime is no
 * longer what its sidecar recorded) one base at a time is hashed again and compared with the SHA-256 recorded
 * when it was stored (core/reverify.ts decides which and when). A base found changed is flagged in its sidecar:
 * the status says so (phase Failed, reason base-corrupt), new disks refuse it, GC removes it once nothing uses it
 * (reason Corrupt), and the agent then fetches it again. Each finding is an Event, a metric and one log line.
 * The base's lock is held while it is hashed, so nothing removes it mid-read and a sidecar is never rewritten
 * for a base that is gone; each hash runs between GC passes, so a pass is never refused for it.
 */
import { join } from "node:path";
import { lstat } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { classifyBaseFileName } from "../core/names.js";
import { corruptMessage, planReverify, type StoredBaseFacts } from "../core/reverify.js";
import { basePaths, listBaseDir, readSidecar, writeSidecar, type BaseSidecar } from "../image/base-dir.js";
import { sha256OfFile } from "../image/file-hash.js";
import { tryAcquireLock } from "../image/lock.js";
import type { Clock } from "../lib/clock.js";
import { asError, ForeignFileError } from "../lib/errors.js";
import type { Logger } from "../lib/log.js";
import type { DiskState } from "./disk-state.js";
import type { AgentMetrics } from "./metrics.js";
import type { NodeEvents } from "./node-events.js";

/** How often the verifier looks at the bases' sizes and mtimes between verifications. */
const LookEveryMs = 60_000;

export interface VerifierOptions {
  baseDir: string;
  /** Time between verifications of one base; 0 turns periodic ones off (a changed size or mtime still counts). */
  intervalMs: number;
  clock: Clock;
  disk: DiskState;
  metrics: AgentMetrics;
  events: NodeEvents;
  log: Logger;
  /** Called after a base was found corrupt: the agent runs GC, which removes it if nothing uses it. */
  onCorrupt: () => void;
  /** Runs one base's verification between GC passes (GcRunner.exclusive); directly when absent. */
  exclusive?: <T>(fn: () => Promise<T>) => Promise<T>;
  /** Between looks; default LookEveryMs (tests use less). */
  lookEveryMs?: number;
}

export class BaseVerifier {
  constructor(private readonly opts: VerifierOptions) {}

  /** Runs until `signal` aborts: a look, the bases due verified one by one, then a sleep until the next is due. */
  async run(signal: AbortSignal): Promise<void> {
    const look = this.opts.lookEveryMs ?? LookEveryMs;
    for (;;) {
      let nextInMs: number | undefined;
      try {
        nextInMs = await this.pass(signal);
      } catch (e) {
        if (signal.aborted) return;
        this.opts.log.error({ err: e }, "Re-verification pass failed");
      }
      await sleep(Math.min(nextInMs ?? look, look), undefined, { signal }).catch(() => undefined);
      if (signal.aborted) return;
    }
  }

  /** One look at the bases and the verifications due now; returns when the next one falls due. */
  async pass(signal?: AbortSignal): Promise<number | undefined> {
    const { facts, sidecars } = await this.gather();
    const plan = planReverify(facts, this.opts.clock.now(), this.opts.intervalMs);
    const run = this.opts.exclusive ?? ((fn) => fn());
    for (const { base, why } of plan.due) {
      signal?.throwIfAborted();
      const sc = sidecars.get(base);
      if (sc) await run(() => this.verify(base, sc, why, signal));
    }
    return plan.nextInMs;
  }

  // The bases on disk with what their sidecars recorded; DiskState learns which are flagged (also after a restart).
  private async gather(): Promise<{ facts: StoredBaseFacts[]; sidecars: Map<string, BaseSidecar> }> {
    const facts: StoredBaseFacts[] = [];
    const sidecars = new Map<string, BaseSidecar>();
    for (const e of await listBaseDir(this.opts.baseDir)) {
      if (classifyBaseFileName(e.name).kind !== "base" || e.type !== "file" || e.links > 1) continue;
      const sc = await readSidecar(this.opts.baseDir, e.name);
      if (!sc || sc.base !== e.name) continue;
      sidecars.set(e.name, sc);
      if (sc.corrupt) this.opts.disk.markCorrupt(e.name, this.messageOf(e.name, sc.corrupt));
      else this.opts.disk.clearCorrupt(e.name);
      const raw = sc.raw;
      const lastVerifiedAt = Date.parse(sc.verifiedAt ?? sc.fetchedAt);
      facts.push({
        base: e.name,
        sizeBytes: e.size,
        mtimeMs: e.mtimeMs,
        corrupt: sc.corrupt !== undefined,
        ...(raw && typeof raw.sha256 === "string" ? { recorded: { rawSha256: raw.sha256, sizeBytes: raw.sizeBytes, mtimeMs: raw.mtimeMs, lastVerifiedAt: Number.isFinite(lastVerifiedAt) ? lastVerifiedAt : 0 } } : {}),
      });
    }
    return { facts, sidecars };
  }

  private async verify(base: string, sc: BaseSidecar, why: string, signal?: AbortSignal): Promise<void> {
    const { baseDir, log, metrics } = this.opts;
    const paths = basePaths(baseDir, base);
    const lock = await tryAcquireLock(paths.lock);
    if (!lock) return; // a fetch or GC has the base now; the next look tries again
    let found = false;
    try {
      const st = await lstat(paths.base).catch(() => undefined);
      if (!st?.isFile()) return;
      const expected = sc.raw?.sha256 ?? "";
      let actual: string;
      try {
        actual = (await sha256OfFile(paths.base, signal)).sha256;
      } catch (e) {
        if (signal?.aborted) throw e;
        metrics.verifications.inc({ result: "error" });
        log.warn({ base, path: paths.base, err: e instanceof ForeignFileError ? e.message : asError(e).message }, "Cannot re-verify base");
        return;
      }
      const now = new Date(this.opts.clock.now()).toISOString();
      if (actual === expected) {
        metrics.verifications.inc({ result: "ok" });
        // A changed mtime with the same bytes (a touch) is recorded, so it is not hashed again on every look.
        await writeSidecar(baseDir, base, { ...sc, verifiedAt: now, ...(sc.raw ? { raw: { ...sc.raw, sizeBytes: st.size, mtimeMs: st.mtimeMs } } : {}) });
        log.debug({ base, imageId: sc.id, why }, "Re-verified base");
        return;
      }
      const corrupt = { detectedAt: now, expected, actual };
      await writeSidecar(baseDir, base, { ...sc, corrupt });
      metrics.verifications.inc({ result: "corrupt" });
      const message = this.messageOf(base, corrupt);
      log.warn({ base, imageId: sc.id, path: paths.base, expected, actual, why }, "Base no longer matches its recorded digest");
      this.opts.events.record("Warning", "BaseCorrupt", "Verify", message);
      this.opts.disk.markCorrupt(base, message);
      found = true;
    } finally {
      await lock.release({ status: "failed", reason: "verify", message: "Base re-verified", errorName: "Retry" });
    }
    if (found) this.opts.onCorrupt();
  }

  private messageOf(base: string, c: { expected: string; actual: string }): string {
    return corruptMessage({ path: join(this.opts.baseDir, base), expected: c.expected, actual: c.actual });
  }
}
