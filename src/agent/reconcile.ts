/**
 * The node agent's pass: gather its NodeImageCache, the bases on disk, what the fetch runner remembers and the
 * budget state GC last found into one input; plan with core/agent-plan.ts; apply by starting, checking or
 * cancelling fetches and offering the status to the writer. Fetches run in the background in the FetchRunner,
 * which asks for another pass when they make progress or end. Every line the pass logs, and every line of a fetch
 * it starts, carries the pass's `reconcileId` (the queue binds it to `log`).
 */
import { planAgent, type AgentPlan, type AgentPlanInput } from "../core/agent-plan.js";
import { baseNameOfImage } from "../core/names.js";
import type { NodeImageCache } from "../kube/api-types.js";
import type { ReconcileResult } from "../kube/work-queue.js";
import type { Clock } from "../lib/clock.js";
import type { Logger } from "../lib/log.js";
import type { DiskState } from "./disk-state.js";
import type { FetchRunner } from "./fetch-runner.js";
import type { StatusWriter } from "./progress.js";

/** The parts one pass reads and drives. */
export interface AgentParts {
  /** The node's NodeImageCache as the informer holds it now. */
  nodeImageCache: () => NodeImageCache | undefined;
  clock: Clock;
  concurrency: number;
  disk: DiskState;
  fetches: FetchRunner;
  status: StatusWriter;
}

/** One pass: gather, plan, apply; `log` is bound to the pass's reconcileId. */
export async function reconcileNode(parts: AgentParts, signal: AbortSignal, log: Logger): Promise<ReconcileResult> {
  const input = await gatherAgentInput(parts);
  const plan = planAgent(input);
  return applyAgentPlan(plan, parts, signal, log);
}

/** Reads everything the plan depends on; the memory is a snapshot, taken last so no await comes between it and the plan. */
export async function gatherAgentInput(parts: AgentParts): Promise<AgentPlanInput> {
  const nic = parts.nodeImageCache();
  const onDisk = await parts.disk.readBases((nic?.spec.images ?? []).map(baseNameOfImage));
  const disk = await parts.disk.readUsage();
  const versions = parts.disk.versions;
  const budget = parts.disk.budget;
  const podUses = parts.disk.podUses;
  return {
    now: parts.clock.now(),
    ...(nic ? { nodeImageCache: nic } : {}),
    onDisk,
    ...(versions.size > 0 ? { versionsOnDisk: versions } : {}),
    disk,
    ...parts.fetches.recall(),
    concurrency: parts.concurrency,
    ...(budget ? { budget } : {}),
    ...(podUses ? { podUses } : {}),
  };
}

/** Carries out a plan: memory first, then cancellations, then new tasks (none once stopping), then the status. */
export function applyAgentPlan(plan: AgentPlan, parts: AgentParts, signal: AbortSignal, log: Logger): ReconcileResult {
  const { fetches } = parts;
  if (plan.seed) fetches.seed(plan.seed);
  for (const { id, why } of plan.cancel) fetches.cancel(id, why, log);
  fetches.forget(plan.forget);
  if (!signal.aborted) {
    for (const image of plan.verify) fetches.start(image, { kind: "verify", generation: plan.generation, log });
    for (const image of plan.start) fetches.start(image, { kind: "fetch", generation: plan.generation, log });
  }
  if (plan.status) parts.status.offer(plan.status, log);
  return plan.requeueAfterMs !== undefined ? { requeueAfterMs: plan.requeueAfterMs } : undefined;
}
