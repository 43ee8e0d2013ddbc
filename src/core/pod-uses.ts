/**
 * Which bases the pods on one node use, and the request/answer handshake that carries it to the agent without
 * the agent reading pods (docs/design/gc-rules.md, "Pod uses come from the controller"). The agent writes a fresh
 * token to `status.podUsesRequest`; the controller lists the node's pods and answers in `spec.podUses` with that
 * token; the agent trusts only an answer that carries its own latest token.
 */
import type { PodUse, PodUsesAnswer } from "./api-records.js";
import type { ConditionInput } from "./conditions.js";
import { imagesFromAnnotation, type GcUse } from "./gc.js";
import { baseNameFor } from "./names.js";

/** The pod annotation that lists, comma-separated, the image ids a pod uses. */
export const ImagesAnnotationKey = "basecache.io/images";
/** Distinct bases one answer may list (the CRD's maxItems); a node whose pods name more gets an incomplete answer. */
export const MaxPodUses = 1024;
/** Pod names listed per base, for logs and Events; the rest are only counted. */
export const MaxPodsPerUse = 8;

const MaxImageIdLength = 1024;

/** A pod as the pod-uses logic needs it. */
export interface PodRecord {
  namespace: string;
  name: string;
  annotations: Readonly<Record<string, string>>;
}

/** Uses of bases declared by pods in their `basecache.io/images` annotation, one per (pod, image). */
export function podUsesFrom(pods: readonly PodRecord[]): GcUse[] {
  return pods.flatMap((p) => imagesFromAnnotation(p.annotations[ImagesAnnotationKey]).map((id) => ({ base: baseNameFor(id), by: `pod ${p.namespace}/${p.name}` })));
}

/** The controller's answer to `token` for the pods of one node listed at `observedAt` (RFC 3339). */
export function planPodUsesAnswer(pods: readonly PodRecord[], token: string, observedAt: string): PodUsesAnswer {
  const byBase = new Map<string, { imageId: string; pods: string[]; podCount: number }>();
  const sorted = [...pods].sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
  for (const p of sorted) {
    for (const id of imagesFromAnnotation(p.annotations[ImagesAnnotationKey])) {
      const base = baseNameFor(id);
      // The id is for people (the base is what GC compares); the CRD bounds it, and a pod may name any string.
      const use = byBase.get(base) ?? { imageId: id.slice(0, MaxImageIdLength), pods: [], podCount: 0 };
      use.podCount += 1;
      if (use.pods.length < MaxPodsPerUse) use.pods.push(`${p.namespace}/${p.name}`);
      byBase.set(base, use);
    }
  }
  if (byBase.size > MaxPodUses) {
    // NOTE: never a truncated list: a base left out would look unused, and GC would delete it under a running VM.
    return { token, observedAt, uses: [], incomplete: `The pods on this node name ${byBase.size} distinct images, more than the ${MaxPodUses} an answer holds` };
  }
  const uses: PodUse[] = [...byBase.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([base, u]) => ({ base, imageId: u.imageId, pods: u.pods, podCount: u.podCount }));
  return { token, observedAt, uses };
}

/** The answer to write when the pods could not be listed: incomplete, so the agent keeps every base at once. */
export function planPodUsesFailure(token: string, observedAt: string, why: string): PodUsesAnswer {
  return { token, observedAt, uses: [], incomplete: why };
}

/** Whether a NodeImageCache's request still waits for an answer: a token is asked for and the answer is not to it. */
export function podUsesAnswerDue(request: string | undefined, answer: PodUsesAnswer | undefined): boolean {
  return request !== undefined && request !== "" && answer?.token !== request;
}

/** What the agent makes of the answer it sees: the uses, or why they are unknown. */
export type PodUsesVerdict = { known: true; uses: GcUse[] } | { known: false; why: string };

/**
 * Judges the answer the agent sees against the token it asked with: only an answer to that very token counts,
 * so an answer written before the question (or by anyone who could not have seen it) is never trusted.
 */
export function judgePodUsesAnswer(answer: PodUsesAnswer | undefined, token: string): PodUsesVerdict {
  if (!answer) return { known: false, why: "no answer from the controller" };
  if (answer.token !== token) return { known: false, why: "the controller's answer is to another request" };
  if (answer.incomplete !== undefined) return { known: false, why: `the controller could not tell: ${answer.incomplete}` };
  return {
    known: true,
    uses: answer.uses.flatMap((u) => (u.pods.length > 0 ? u.pods : [`${u.podCount} pods`]).map((p) => ({ base: u.base, by: `pod ${p}${u.podCount > u.pods.length ? ` (of ${u.podCount})` : ""}` }))),
  };
}

/**
 * Whether pod uses can change what a GC pass removes: only a complete base that no NodeImageCache wants could go,
 * so without one (and with the wanted images known) the pass needs no answer from the controller.
 */
export function podUsesMatter(bases: readonly string[], wanted: readonly string[] | undefined): boolean {
  if (wanted === undefined) return bases.length > 0;
  const w = new Set(wanted);
  return bases.some((b) => !w.has(b));
}

/** What the agent's last question about pod uses came to, for the PodUsesKnown condition. */
export interface PodUsesState {
  known: boolean;
  /** CamelCase: Answered, NoAnswer, AnswerIncomplete, RequestFailed. */
  reason: string;
  message: string;
}

/**
 * PodUsesKnown: True when the controller answered the agent's last question (reason Answered); False when GC
 * had to keep every base pods might use because no trustworthy answer came (NoAnswer, AnswerIncomplete,
 * RequestFailed).
 */
export function podUsesCondition(s: PodUsesState, generation: number): ConditionInput {
  return { type: "PodUsesKnown", status: s.known ? "True" : "False", reason: s.reason, message: s.message, observedGeneration: generation };
}

/**
 * A pod that names a tracked image may run a VM on any of its versions (a disk the agent cannot see): its use
 * protects every version of the id stored here, not only `sha1(id)`.
 */
export function podUsesOfVersions(uses: readonly GcUse[], versions: ReadonlyMap<string, readonly { base: string }[]>): GcUse[] {
  if (versions.size === 0) return [...uses];
  const byIdBase = new Map([...versions.entries()].map(([id, list]) => [baseNameFor(id), list]));
  return uses.flatMap((u) => [u, ...(byIdBase.get(u.base) ?? []).map((v) => ({ base: v.base, by: u.by }))]);
}
