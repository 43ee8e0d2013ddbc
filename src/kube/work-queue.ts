/**
 * The reconcile loop's queue, after controller-runtime's reconcileHandler: it carries keys, never events; a
 * key is queued at most once and never processed by two workers at once. A pass that throws is retried with
 * capped per-key exponential backoff and jitter; a TerminalError is not retried; a 409 conflict re-enters
 * through the same limiter but is logged at debug; a pass may ask to be run again after a delay (polling).
 * Each pass gets a logger bound to a fresh `reconcileId` (as controller-runtime binds one per pass), and every
 * outcome is counted in the process's queue metrics.
 */
import { randomUUID } from "node:crypto";
import { backoffDelay, type BackoffPolicy } from "../core/backoff.js";
import { monotonicClock, type Clock } from "../lib/clock.js";
import { TerminalError, asError } from "../lib/errors.js";
import { silentLogger, type Logger } from "../lib/log.js";
import type { QueueMetrics } from "../lib/metrics.js";
import { isConflict } from "./client.js";

/** What a pass returns: nothing, or a delay after which to look again (for polling, never for errors). */
export type ReconcileResult = void | { requeueAfterMs?: number };
/** One pass for `key`; `log` is bound to the key and this pass's reconcileId. */
export type Reconciler = (key: string, signal: AbortSignal, log: Logger) => Promise<ReconcileResult>;

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
  /** Measures passes and delays; default the process's monotonic clock. */
  clock?: Clock;
  /** Counts every pass by kind and outcome. */
  metrics?: QueueMetrics;
  /** The metrics' `kind` of a key; default the part before ":", or the queue's name. */
  kindOf?: (key: string) => string;
  /** A new reconcileId; default a random UUID. */
  newId?: () => string;
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
  private readonly clock: Clock;
  private stopping = false;
  private workers: Promise<void>[] = [];

  constructor(private readonly opts: WorkQueueOptions) {
    this.log = (opts.log ?? silentLogger).child({ queue: opts.name });
    this.policy = opts.backoff ?? { baseMs: 200, maxMs: 60_000 };
    this.clock = opts.clock ?? monotonicClock;
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
    const at = this.clock.now() + ms;
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
      await this.pass(key, signal);
      this.processing.delete(key);
      if (this.dirty.delete(key)) this.add(key);
      if (this.idle) for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  private async pass(key: string, signal: AbortSignal): Promise<void> {
    const log = this.log.child({ key, reconcileId: (this.opts.newId ?? randomUUID)() });
    const started = this.clock.now();
    let outcome: ReconcileOutcome;
    try {
      const result = await this.opts.reconcile(key, signal, log);
      this.failures.delete(key);
      const after = result?.requeueAfterMs;
      outcome = after !== undefined && after >= 0 ? "requeue" : "success";
      if (outcome === "requeue") this.addAfter(key, after!);
    } catch (e) {
      outcome = this.handleFailure(key, asError(e), signal, log);
    }
    const durationMs = this.clock.now() - started;
    log.debug({ outcome, durationMs: Math.round(durationMs) }, "Reconciled key");
    const m = this.opts.metrics;
    if (!m) return;
    const kind = this.opts.kindOf?.(key) ?? (key.includes(":") ? key.slice(0, key.indexOf(":")) : this.opts.name);
    m.reconciles.inc({ kind, outcome });
    m.reconcileSeconds.observe({ kind }, durationMs / 1000);
    m.queueDepth.set(this.queue.size);
  }

  private handleFailure(key: string, err: Error, signal: AbortSignal, log: Logger): ReconcileOutcome {
    if (signal.aborted) return "error";
    if (err instanceof TerminalError) {
      this.failures.delete(key);
      log.error({ err }, "Reconcile failed and will not be retried");
      return "terminal";
    }
    const attempt = this.failures.get(key) ?? 0;
    this.failures.set(key, attempt + 1);
    const delayMs = backoffDelay(this.policy, attempt, (this.opts.random ?? Math.random)());
    this.addAfter(key, delayMs);
    if (isConflict(err)) {
      log.debug({ delayMs }, "Reconcile hit a conflict, retrying");
      return "conflict";
    }
    log.warn({ err, attempt: attempt + 1, delayMs }, "Reconcile failed, retrying");
    return "error";
  }
}
