/**
 * The agent's side of the pod-uses handshake (core/pod-uses.ts): the agent may not read pods, so before a GC
 * pass that could remove a base it writes a fresh random token to its NodeImageCache's status and waits, a
 * bounded time, for the controller's answer in the spec carrying that very token. The answer is therefore
 * never older than the question. No answer, a foreign one or an incomplete one leaves the uses unknown, and
 * GC keeps every base pods might use.
 */
import { randomUUID } from "node:crypto";
import type { NodeImageCache } from "../core/api-records.js";
import type { GcUse } from "../core/gc.js";
import { judgePodUsesAnswer, type PodUsesState } from "../core/pod-uses.js";
import { asError } from "../lib/errors.js";
import type { Logger } from "../lib/log.js";
import type { AgentMetrics } from "./metrics.js";
import type { StatusWriter } from "./progress.js";

/** How long the agent waits for the controller's answer by default. */
export const DefaultPodUsesTimeoutMs = 30_000;

/** Pod uses, or why they are unknown. */
export type PodUsesResult = GcUse[] | { unknown: string };

export interface PodUsesAskerOptions {
  status: Pick<StatusWriter, "requestPodUses">;
  /** The node's NodeImageCache as the informer holds it now. */
  nodeImageCache: () => NodeImageCache | undefined;
  timeoutMs: number;
  log: Logger;
  metrics: AgentMetrics;
  /** Told what each question came to (the PodUsesKnown condition). */
  onState: (s: PodUsesState) => void;
  newToken?: () => string;
}

export class PodUsesAsker {
  private readonly waiters = new Set<() => void>();

  constructor(private readonly opts: PodUsesAskerOptions) {}

  /** The informer saw the NodeImageCache change: an answer may have arrived. */
  notify(): void {
    for (const w of [...this.waiters]) w();
  }

  /** Asks the controller which bases the pods on this node use, and waits for its answer to this question. */
  async ask(signal: AbortSignal): Promise<PodUsesResult> {
    const token = (this.opts.newToken ?? randomUUID)();
    const seconds = `${Math.round(this.opts.timeoutMs / 100) / 10}s`;
    try {
      await this.opts.status.requestPodUses(token);
    } catch (e) {
      return this.unknown("failed", "RequestFailed", `Cannot ask the controller which bases pods use: ${asError(e).message}`);
    }
    const answered = await this.waitForAnswer(token, signal);
    const verdict = judgePodUsesAnswer(this.opts.nodeImageCache()?.spec.podUses, token);
    if (verdict.known) {
      this.opts.metrics.podUsesQuestions.inc({ outcome: "answered" });
      this.opts.log.debug({ token, uses: verdict.uses.length }, "Received pod uses from the controller");
      this.opts.onState({ known: true, reason: "Answered", message: "The controller answered the last question about which bases pods on this node use" });
      return verdict.uses;
    }
    if (answered) return this.unknown("incomplete", "AnswerIncomplete", `Pods on this node are not known: ${verdict.why}`);
    // An answer to another token is never trusted: it may predate the question (a replay, or the last pass's).
    const other = this.opts.nodeImageCache()?.spec.podUses ? "; the one present answers another request" : "";
    return this.unknown("timeout", "NoAnswer", `Pods on this node are not known: no answer from the controller within ${seconds}${other} (is it running, and may it list pods?)`);
  }

  private unknown(outcome: string, reason: string, message: string): PodUsesResult {
    this.opts.metrics.podUsesQuestions.inc({ outcome });
    this.opts.log.warn({ reason }, message);
    this.opts.onState({ known: false, reason, message });
    return { unknown: message };
  }

  // Resolves true once the NodeImageCache carries an answer to `token`, false when the wait runs out or stops.
  private waitForAnswer(token: string, signal: AbortSignal): Promise<boolean> {
    const has = () => this.opts.nodeImageCache()?.spec.podUses?.token === token;
    if (has()) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const done = (v: boolean) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      };
      const check = () => {
        if (has()) done(true);
      };
      const onAbort = () => done(false);
      const timer = setTimeout(() => done(false), this.opts.timeoutMs);
      this.waiters.add(check);
      signal.addEventListener("abort", onAbort, { once: true });
      if (signal.aborted) done(false);
    });
  }
}
