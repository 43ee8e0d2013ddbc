/**
 * The agent's status writer: takes every status the reconciler computes and writes it to the NodeImageCache's
 * status subresource as core/progress.ts decides: nothing when nothing changed, progress at most every 10 s,
 * outcomes within a second. A failed write is retried after a short delay; offers meanwhile only update what
 * the retry will write. A write logs under the logger of the pass whose status it writes.
 */
import type { NodeImageCacheStatus } from "../core/api-records.js";
import { decideStatusWrite, DefaultWritePolicy, type WritePolicy } from "../core/progress.js";
import type { ClusterResource } from "../kube/client.js";
import { normalizeJson } from "../kube/status.js";
import type { Clock } from "../lib/clock.js";
import { asError } from "../lib/errors.js";
import type { Logger } from "../lib/log.js";
import type { AgentMetrics } from "./metrics.js";

export const FieldManager = "basecache-agent";
const RetryAfterFailureMs = 2_000;

export class StatusWriter {
  private written: NodeImageCacheStatus | undefined;
  private writtenAt: number | undefined;
  private wanted: NodeImageCacheStatus | undefined;
  /** The logger of the pass that offered `wanted`. */
  private wantedLog: Logger;
  private timer: NodeJS.Timeout | undefined;
  /** When `timer` fires, on the writer's clock. */
  private timerAt: number | undefined;
  /** After a failed write, no write before this time (on the writer's clock), whatever the policy says. */
  private retryAt: number | undefined;
  private writing: Promise<void> | undefined;
  private stopped = false;
  /** The latest pod-uses request token; every status write carries it, so a whole-status write never drops it. */
  private podUsesRequest: string | undefined;

  constructor(
    private readonly opts: {
      resource: ClusterResource;
      name: string;
      clock: Clock;
      log: Logger;
      metrics?: AgentMetrics;
      policy?: WritePolicy;
    },
  ) {
    this.wantedLog = opts.log;
  }

  /** Tells the writer what the server holds now (from the informer), so an equal status is never rewritten. */
  observe(stored: NodeImageCacheStatus | undefined): void {
    if (this.written === undefined && stored !== undefined) {
      const { podUsesRequest: _request, ...rest } = stored;
      this.written = normalizeJson(rest);
    }
  }

  /**
   * Writes a new pod-uses request token to the status now, after any write in flight, so that no whole-status
   * write started earlier can land after it and take it away. Rejects when the write fails.
   */
  async requestPodUses(token: string): Promise<void> {
    this.podUsesRequest = token;
    while (this.writing) await this.writing;
    const write = this.opts.resource.mergePatchStatus(this.opts.name, { status: { podUsesRequest: token } }, FieldManager).then(() => undefined);
    this.writing = write.catch(() => undefined);
    try {
      await write;
    } finally {
      this.writing = undefined;
      this.schedule();
    }
  }

  /** Offers the latest computed status; it is written now, later, or not at all, logged under `log` (the pass's). */
  offer(status: NodeImageCacheStatus, log: Logger): void {
    this.wanted = normalizeJson(status);
    this.wantedLog = log;
    this.schedule();
  }

  /** Writes whatever is pending now, whatever the policy's delays say (used before a graceful stop). */
  async flush(): Promise<void> {
    // A write that ends may start the next one at once; wait until none is in flight so two never race.
    while (this.writing) await this.writing;
    if (this.wanted && this.decide(this.wanted, this.opts.clock.now()).action !== "none") await this.write();
  }

  stop(): void {
    this.stopped = true;
    this.disarm();
  }

  private decide(wanted: NodeImageCacheStatus, now: number) {
    const state = { ...(this.written ? { written: this.written } : {}), ...(this.writtenAt !== undefined ? { writtenAt: this.writtenAt } : {}) };
    return decideStatusWrite(wanted, state, now, this.opts.policy ?? DefaultWritePolicy);
  }

  private schedule(): void {
    if (this.stopped || this.writing || !this.wanted) return;
    const now = this.opts.clock.now();
    const d = this.decide(this.wanted, now);
    if (d.action === "none") {
      this.disarm();
      return;
    }
    // NOTE: a failed write holds back every later one for RetryAfterFailureMs: without it each offer (and the
    // end of each failed write) would write again at once, hammering an apiserver that is already failing.
    // Capped, so a clock that went backwards cannot stretch the wait.
    const retryIn = this.retryAt === undefined ? 0 : Math.min(this.retryAt - now, RetryAfterFailureMs);
    const afterMs = Math.max(d.action === "wait" ? d.afterMs : 0, retryIn);
    if (afterMs <= 0) {
      this.disarm();
      void this.write();
      return;
    }
    this.arm(now + afterMs, afterMs);
  }

  // Keeps a wake-up that comes no later than `at`; otherwise replaces it, so an outcome that needs writing within
  // a second is not held back behind a progress wake-up set up to 10 s earlier.
  private arm(at: number, afterMs: number): void {
    if (this.timer && this.timerAt !== undefined && this.timerAt <= at) return;
    this.disarm();
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.timerAt = undefined;
      this.schedule();
    }, afterMs);
    this.timer.unref();
  }

  private disarm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = undefined;
  }

  private async write(): Promise<void> {
    const status = this.wanted;
    const log = this.wantedLog;
    if (!status) return;
    this.writing = (async () => {
      try {
        const request = this.podUsesRequest;
        await this.opts.resource.replaceStatus(this.opts.name, request === undefined ? status : { ...status, podUsesRequest: request }, FieldManager);
        this.written = status;
        this.writtenAt = this.opts.clock.now();
        this.retryAt = undefined;
        this.opts.metrics?.statusWrites.inc({ outcome: "written" });
        log.debug({ images: status.images?.length ?? 0 }, "Wrote NodeImageCache status");
      } catch (e) {
        this.retryAt = this.opts.clock.now() + RetryAfterFailureMs;
        this.opts.metrics?.statusWrites.inc({ outcome: "failed" });
        log.warn({ err: asError(e) }, "Cannot write NodeImageCache status, retrying");
      }
    })();
    await this.writing;
    this.writing = undefined;
    // A newer status may have arrived while this write was in flight; after a failure this sets the retry wake-up.
    this.schedule();
  }
}
