/**
 * The controller's side of the pod-uses handshake (`poduses:<node>`): an agent may not read pods, so it writes
 * a fresh token to its NodeImageCache's `status.podUsesRequest`; this pass lists that node's pods afresh (a LIST
 * without a resourceVersion is a consistent read, never the informer's possibly lagging cache), plans the answer
 * (core/pod-uses.ts) and writes it to `spec.podUses` with the token. Pods the controller cannot list give an
 * answer that says so, and the agent keeps every base at once instead of waiting out its timeout.
 */
import { planPodUsesAnswer, planPodUsesFailure, podUsesAnswerDue, type PodRecord } from "../core/pod-uses.js";
import type { PodUsesAnswer } from "../kube/api-types.js";
import { call, isNotFound, type RawObject } from "../kube/client.js";
import { parseNodeImageCache } from "../kube/parse.js";
import type { ReconcileResult, WorkQueue } from "../kube/work-queue.js";
import { asError } from "../lib/errors.js";
import type { Logger } from "../lib/log.js";
import type { ControllerContext, ControllerInformers } from "./context.js";

export const podUsesKey = (name: string) => `poduses:${name}`;

function requestOf(raw: RawObject): string | undefined {
  const s = raw.status as { podUsesRequest?: unknown } | undefined;
  return typeof s?.podUsesRequest === "string" ? s.podUsesRequest : undefined;
}

function answerTokenOf(raw: RawObject): string | undefined {
  const a = (raw.spec as { podUses?: { token?: unknown } } | undefined)?.podUses;
  return typeof a?.token === "string" ? a.token : undefined;
}

/** Queues a node's pod-uses pass whenever its NodeImageCache carries a request not yet answered. */
export function wirePodUses(informers: ControllerInformers, queue: WorkQueue): void {
  const onNic = (nic: RawObject) => {
    const request = requestOf(nic);
    if (request !== undefined && request !== "" && request !== answerTokenOf(nic)) queue.add(podUsesKey(nic.metadata?.name ?? ""));
  };
  informers.nodeImageCaches.on("add", onNic);
  informers.nodeImageCaches.on("update", onNic);
}

/** Answers the node's latest pod-uses request, if one is due. */
export async function reconcilePodUses(ctx: ControllerContext, node: string, log: Logger): Promise<ReconcileResult> {
  const raw = ctx.informers.nodeImageCaches.get(node);
  if (!raw) return;
  const nic = parseNodeImageCache(raw);
  const token = nic.status?.podUsesRequest;
  if (token === undefined || !podUsesAnswerDue(token, nic.spec.podUses)) return;
  const answer = await gatherAnswer(ctx, node, token, log);
  try {
    await ctx.clients.nodeImageCaches.mergePatch(node, { spec: { podUses: answer } }, ctx.fieldManager);
  } catch (err) {
    if (isNotFound(err)) return;
    throw err;
  }
  ctx.metrics.writes.inc({ resource: "nodeimagecaches", verb: "patch" });
  ctx.metrics.podUsesAnswers.inc({ outcome: answer.incomplete === undefined ? "answered" : "incomplete" });
  log.debug({ node, token, uses: answer.uses.length, ...(answer.incomplete ? { incomplete: answer.incomplete } : {}) }, "Answered pod uses");
  return;
}

async function gatherAnswer(ctx: ControllerContext, node: string, token: string, log: Logger): Promise<PodUsesAnswer> {
  const observedAt = new Date(ctx.clocks.wall.now()).toISOString().replace(/\.\d{3}Z$/, "Z");
  try {
    const pods = await listNodePods(ctx, node);
    return planPodUsesAnswer(pods, token, observedAt);
  } catch (err) {
    const e = asError(err);
    log.warn({ node, err: e }, "Cannot list the pods of a node to answer its agent: its GC keeps every base");
    return planPodUsesFailure(token, observedAt, e.message.slice(0, 1000));
  }
}

// NOTE: no resourceVersion, so the API server serves the list from a quorum read (or a cache proven as fresh):
// a pod created just before the agent asked is in it. https://kubernetes.io/docs/reference/using-api/api-concepts/#semantics-for-get-and-list
async function listNodePods(ctx: ControllerContext, node: string): Promise<PodRecord[]> {
  const r = await call(`Cannot list pods on node "${node}"`, () => ctx.clients.core.listPodForAllNamespaces({ fieldSelector: `spec.nodeName=${node}` }));
  return r.items.map((p) => ({ namespace: p.metadata?.namespace ?? "", name: p.metadata?.name ?? "", annotations: p.metadata?.annotations ?? {} }));
}
