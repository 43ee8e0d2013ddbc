/**
 * What the real-node tests do with basecache's own workloads: wait for the agent and the controller to be
 * Ready, read a pod's metrics straight from its address on the bridge (the host reaches pods there), find
 * a base file in the node's hostPath, and write an ImageCache.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { eventually } from "../eventually.js";
import { listCgroups } from "./host.js";
import type { TestNode } from "./node.js";

export const Namespace = "basecache-system";
export const BaseDir = "/var/lib/basecache/_base";

export interface PodFacts {
  name: string;
  uid: string;
  ip: string;
  ready: boolean;
  restarts: number;
  /** Reasons of containers' last terminations (e.g. OOMKilled). */
  lastTerminations: string[];
}

interface PodJson {
  metadata: { name: string; uid: string; deletionTimestamp?: string };
  status: { podIP?: string; conditions?: { type: string; status: string }[]; containerStatuses?: { restartCount: number; lastState?: { terminated?: { reason?: string } } }[] };
}

/** The pods of one component ("agent" or "controller"), those being deleted left out. */
export async function componentPods(node: TestNode, component: string, namespace = Namespace): Promise<PodFacts[]> {
  const out = JSON.parse(await node.kubectl(["get", "pods", "-n", namespace, "-l", `app.kubernetes.io/component=${component}`, "-o", "json"])) as { items: PodJson[] };
  return out.items
    .filter((p) => !p.metadata.deletionTimestamp)
    .map((p) => ({
      name: p.metadata.name,
      uid: p.metadata.uid,
      ip: p.status.podIP ?? "",
      ready: p.status.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false,
      restarts: (p.status.containerStatuses ?? []).reduce((n, c) => n + c.restartCount, 0),
      lastTerminations: (p.status.containerStatuses ?? []).flatMap((c) => (c.lastState?.terminated?.reason ? [c.lastState.terminated.reason] : [])),
    }));
}

/** Waits for the agent DaemonSet and the controller Deployment to finish rolling out and be Ready. */
export async function waitInstalled(node: TestNode, namespace = Namespace, names = { agent: "daemonset/basecache-agent", controller: "deployment/basecache-controller" }): Promise<void> {
  for (const what of [names.agent, names.controller]) await node.kubectl(["rollout", "status", "-n", namespace, what, "--timeout=240s"]);
}

/** The one Ready agent pod that is not `notUid` (e.g. the pod just deleted). */
export async function readyAgent(node: TestNode, notUid?: string, namespace = Namespace): Promise<PodFacts> {
  return eventually(
    async () => {
      const pods = (await componentPods(node, "agent", namespace)).filter((p) => p.uid !== notUid);
      assert.equal(pods.length, 1, `one agent pod: ${JSON.stringify(pods)}`);
      const [pod] = pods;
      assert.ok(pod?.ready, `agent Ready: ${JSON.stringify(pod)}`);
      return pod;
    },
    { timeoutMs: 180_000, intervalMs: 1000, description: "a Ready agent pod" },
  );
}

/** Prometheus text of a pod's metrics port, parsed into `name{labels}` -> value. */
export async function podMetrics(ip: string, port = 8080): Promise<Map<string, number>> {
  const res = await fetch(`http://${ip}:${port}/metrics`, { signal: AbortSignal.timeout(10_000) });
  assert.equal(res.status, 200, `metrics of ${ip}:${port}`);
  const out = new Map<string, number>();
  for (const line of (await res.text()).split("\n")) {
    const m = /^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?)\s+(\S+)/.exec(line);
    if (m?.[1] && m[2]) out.set(m[1], Number(m[2]));
  }
  return out;
}

/** The sum of every series of `name` in `metrics` (0 when none). */
export function metricSum(metrics: Map<string, number>, name: string): number {
  let sum = 0;
  for (const [k, v] of metrics) if (k === name || k.startsWith(`${name}{`)) sum += v;
  return sum;
}

/** The path of image `id`'s base on the node: the SHA-1 hex of the id under _base. */
export function basePath(id: string): string {
  return join(BaseDir, createHash("sha1").update(id).digest("hex"));
}

/** Inode, size and mtime of a file: equal facts mean the same file, never rewritten. */
export async function fileFacts(path: string): Promise<{ ino: number; size: number; mtimeMs: number }> {
  const s = await stat(path);
  return { ino: s.ino, size: s.size, mtimeMs: s.mtimeMs };
}

/** An ImageCache of one image on every node, as a user writes it. */
export function imageCache(name: string, id: string, url: string, unusedFor = "24h"): object {
  return {
    apiVersion: "basecache.io/v1alpha1",
    kind: "ImageCache",
    metadata: { name },
    spec: { images: [{ id, source: { http: { url } } }], retention: { unusedFor } },
  };
}

/** Waits for ImageCache `name`'s Ready condition to be True. */
export async function waitImageCacheReady(node: TestNode, name: string, timeoutMs = 180_000): Promise<void> {
  await eventually(
    async () => {
      const ic = JSON.parse(await node.kubectl(["get", "imagecache", name, "-o", "json"])) as { status?: { conditions?: { type: string; status: string; reason?: string; message?: string }[] } };
      const ready = ic.status?.conditions?.find((c) => c.type === "Ready");
      assert.equal(ready?.status, "True", JSON.stringify(ic.status ?? {}));
    },
    { timeoutMs, intervalMs: 1000, description: `ImageCache ${name} Ready` },
  );
}

/**
 * Writes, in a new temp dir, what a user writes to install deploy/ with `kubectl apply -k`: deploy/ as the
 * base and their registry's copy of the image (`ref`, repo:tag), nothing else. Resolves the dir.
 */
export async function writeKustomization(deployDir: string, ref: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "basecache-kustomize-"));
  const [newName, newTag] = [ref.slice(0, ref.lastIndexOf(":")), ref.slice(ref.lastIndexOf(":") + 1)];
  // kustomize takes a base only by a relative path.
  const lines = ["apiVersion: kustomize.config.k8s.io/v1beta1", "kind: Kustomization", "resources:", `  - ${relative(dir, deployDir)}`, "images:", "  - name: localhost/basecache", `    newName: ${newName}`, `    newTag: "${newTag}"`, ""];
  await writeFile(join(dir, "kustomization.yaml"), lines.join("\n"));
  return dir;
}

/** The memory cgroup (v1) dir of pod `uid` (cgroupfs driver: .../kubepods/<qos>/pod<uid>). */
export async function podMemoryCgroup(uid: string): Promise<string> {
  const found = (await listCgroups()).find((d) => d.startsWith("/sys/fs/cgroup/memory/") && d.endsWith(`/pod${uid}`));
  if (!found) throw new Error(`No memory cgroup of pod ${uid} under /sys/fs/cgroup/memory`);
  return found;
}

/** Waits until exactly one controller pod says it leads and the Lease names that pod. */
export async function oneControllerLeads(node: TestNode, namespace = Namespace): Promise<void> {
  const controllers = await componentPods(node, "controller", namespace);
  assert.equal(controllers.length, 2, "two controller replicas");
  await eventually(
    async () => {
      const leaders = await Promise.all(controllers.map(async (c) => metricSum(await podMetrics(c.ip), "basecache_controller_is_leader")));
      assert.deepEqual([...leaders].sort(), [0, 1], "exactly one controller leads");
      const lease = JSON.parse(await node.kubectl(["get", "lease", "-n", namespace, "basecache-controller", "-o", "json"])) as { spec: { holderIdentity?: string } };
      const leader = controllers[leaders.indexOf(1)];
      assert.ok(leader && lease.spec.holderIdentity?.includes(leader.name), `the Lease names the leading pod: ${lease.spec.holderIdentity ?? "none"} vs ${leader?.name ?? "?"}`);
    },
    { timeoutMs: 60_000, intervalMs: 1000, description: "one controller holds the Lease" },
  );
}
