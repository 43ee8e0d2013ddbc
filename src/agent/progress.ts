/**
 * The agent's status writer: takes every status the reconciler computes and writes it to the NodeImageCache's
 * status subresource as core/progress.ts decides: nothing when nothing changed, progress at most every 10 s,
 * outcomes within a second. A failed write is retried on the next offer or after a short delay.
 */
import type { AgentStatus } from "../core/agent-plan.js";
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
  private written: AgentStatus | undefined;
  private writtenAt: number | undefined;
  private wanted: AgentStatus | undefined;
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly opts: {
      resource: ClusterResource;
      name: string;
      clock: Clock;
      log: Logger;
      metrics?: AgentMetrics;
      policy?: WritePolicy;
    },
  ) {}

  /** Tells the writer what the server holds now (from the informer), so an equal status is never rewritten. */
  observe(stored: AgentStatus | undefined): void {
    if (this.written === undefined && stored !== undefined) this.written = normalizeJson(stored);
  }

  /** Offers the latest computed status; it is written now, later, or not at all. */
  offer(status: AgentStatus): void {
    this.wanted = normalizeJson(status);
    this.schedule();
  }

  /** Writes whatever is pending now, whatever the policy says (used before a graceful stop). */
  async flush(): Promise<void> {
    await this.writing;
    if (this.wanted && decideStatusWrite(this.wanted, this.state(), this.opts.clock.now()).action !== "none") await this.write();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  private state() {
    return { ...(this.written ? { written: this.written } : {}), ...(this.writtenAt !== undefined ? { writtenAt: this.writtenAt } : {}) };
  }

  private schedule(): void {
    if (this.stopped || this.writing || !this.wanted) return;
    const d = decideStatusWrite(this.wanted, this.state(), this.opts.clock.now(), this.opts.policy ?? DefaultWritePolicy);
    if (d.action === "none") return;
    if (d.action === "write") {
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
      void this.write();
      return;
    }
    if (this.timer) return; // an earlier wake-up is already set
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.schedule();
    }, d.afterMs);
    this.timer.unref();
  }

  private async write(): Promise<void> {
    const status = this.wanted;
    if (!status) return;
    this.writing = (async () => {
      try {
        await this.opts.resource.replaceStatus(this.opts.name, status, FieldManager);
        this.written = status;
        this.writtenAt = this.opts.clock.now();
        this.opts.metrics?.statusWrites.inc({ outcome: "written" });
        this.opts.log.debug({ images: status.images?.length ?? 0 }, "Wrote NodeImageCache status");
      } catch (e) {
        this.opts.metrics?.statusWrites.inc({ outcome: "failed" });
        this.opts.log.warn({ err: asError(e) }, "Cannot write NodeImageCache status, retrying");
        if (!this.stopped) {
          this.timer ??= setTimeout(() => {
            this.timer = undefined;
            this.schedule();
          }, RetryAfterFailureMs);
          this.timer.unref();
        }
      }
    })();
    await this.writing;
    this.writing = undefined;
    // A newer status may have arrived while this write was in flight.
    this.schedule();
  }
}
