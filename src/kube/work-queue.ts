/**
 * The reconcile loop's queue, after controller-runtime's reconcileHandler: it carries keys, never events; a
 * key is queued at most once and never processed by two workers at once. A pass that throws is retried with
 * capped per-key exponential backoff and jitter; a TerminalError is not retried; a 409 conflict re-enters
 * through the same limiter but is logged at debug; a pass may ask to be run again after a delay (polling).
 */
import { backoffDelay, type BackoffPolicy } from "../core/backoff.js";
import { TerminalError, asError } from "../lib/errors.js";
import { silentLogger, type Logger } from "../lib/log.js";
import { isConflict } from "./client.js";

/** What a pass returns: nothing, or a delay after which to look again (for polling, never for errors). */
export type ReconcileResult = void | { requeueAfterMs?: number };
export type Reconciler = (key: string, signal: AbortSignal) => Promise<ReconcileResult>;

export type ReconcileOutcome = "success" | "requeue" | "error" | "conflict" | "terminal";

export interface WorkQueueOptions {
  name: string;
  reconcile: Reconciler;
  /** Parallel passes (different keys); default 1. */
  workers?: number;
  backoff?: BackoffPolicy;
  log?: Logger;
  /** Randomness for jitter, in [0, 1). */
  random?: () => number;
  /** Called after every pass, for metrics. */
  observe?: (outcome: ReconcileOutcome, durationMs: number, key: string) => void;
}

export class WorkQueue {
  private readonly queue = new Set<string>();
  private readonly processing = new Set<string>();
  /** Keys added while being processed: they go back in line when their pass ends. */
  private readonly dirty = new Set<string>();
  private readonly timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private readonly failures = new Map<string, number>();
  private readonly waiting: (() => void)[] = [];
  private readonly idleWaiters: (() => void)[] = [];
  private readonly log: Logger;
  private readonly policy: BackoffPolicy;
  private stopping = false;
  private workers: Promise<void>[] = [];

  constructor(private readonly opts: WorkQueueOptions) {
    this.log = (opts.log ?? silentLogger).child({ queue: opts.name });
    this.policy = opts.backoff ?? { baseMs: 200, maxMs: 60_000 };
  }

  /** Queues `key` now, unless it is already queued. */
  add(key: string): void {
    if (this.stopping) return;
    if (this.processing.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.queue.has(key)) return;
    this.queue.add(key);
    this.waiting.shift()?.();
  }

  /** Queues `key` after `ms`; an earlier pending request for the same key wins. */
  addAfter(key: string, ms: number): void {
    if (this.stopping) return;
    if (ms <= 0) return this.add(key);
    const at = performance.now() + ms;
    const existing = this.timers.get(key);
    if (existing && existing.at <= at) return;
    if (existing) clearTimeout(existing.timer);
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, ms);
    timer.unref();
    this.timers.set(key, { at, timer });
  }

  /** Keys waiting to be processed now (not counting delayed ones). */
  get length(): number {
    return this.queue.size;
  }

  /** Nothing queued and nothing being processed (delayed keys may still be pending). */
  get idle(): boolean {
    return this.queue.size === 0 && this.processing.size === 0;
  }

  /** Resolves the next time the queue is idle. */
  whenIdle(): Promise<void> {
    if (this.idle) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Starts the workers; they stop when `signal` aborts and `drain()` resolves once in-flight passes end. */
  start(signal: AbortSignal): void {
    const n = this.opts.workers ?? 1;
    for (let i = 0; i < n; i++) this.workers.push(this.work(signal));
    signal.addEventListener(
      "abort",
      () => {
        this.stopping = true;
        for (const { timer } of this.timers.values()) clearTimeout(timer);
        this.timers.clear();
        for (const w of this.waiting.splice(0)) w();
      },
      { once: true },
    );
  }

  async drain(): Promise<void> {
    await Promise.all(this.workers);
  }

  private next(): Promise<string | undefined> {
    return new Promise((resolve) => {
      const take = () => {
        if (this.stopping) return resolve(undefined);
        for (const key of this.queue) {
          if (this.processing.has(key)) continue;
          this.queue.delete(key);
          return resolve(key);
        }
        this.waiting.push(take);
      };
      take();
    });
  }

  private async work(signal: AbortSignal): Promise<void> {
    for (;;) {
      const key = await this.next();
      if (key === undefined) return;
      this.processing.add(key);
      const started = performance.now();
      let outcome: ReconcileOutcome;
      try {
        const result = await this.opts.reconcile(key, signal);
        this.failures.delete(key);
        const after = result?.requeueAfterMs;
        outcome = after !== undefined && after >= 0 ? "requeue" : "success";
        if (outcome === "requeue") this.addAfter(key, after!);
      } catch (e) {
        outcome = this.handleFailure(key, asError(e), signal);
      }
      this.opts.observe?.(outcome, performance.now() - started, key);
      this.processing.delete(key);
      if (this.dirty.delete(key)) this.add(key);
      if (this.idle) for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  private handleFailure(key: string, err: Error, signal: AbortSignal): ReconcileOutcome {
    if (signal.aborted) return "error";
    if (err instanceof TerminalError) {
      this.failures.delete(key);
      this.log.error({ err, key }, "Reconcile failed and will not be retried");
      return "terminal";
    }
    const attempt = this.failures.get(key) ?? 0;
    this.failures.set(key, attempt + 1);
    const delayMs = backoffDelay(this.policy, attempt, (this.opts.random ?? Math.random)());
    this.addAfter(key, delayMs);
    if (isConflict(err)) {
      this.log.debug({ key, delayMs }, "Reconcile hit a conflict, retrying");
      return "conflict";
    }
    this.log.warn({ err, key, attempt: attempt + 1, delayMs }, "Reconcile failed, retrying");
    return "error";
  }
}
