/**
 * deploy/examples/vm-pod.yaml and deploy/examples/imagecache.yaml as a user on the real node runs them: the names
 * they use, and the VM pod with every image the test image and the VM stood in for (no KVM, no VM runner here).
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { V1Container, V1PodSpec } from "@kubernetes/client-node";
import { parseManifests, type ManifestObject } from "../manifests.js";
import { repoRoot } from "./testbed.js";
import { basePath } from "./workloads.js";

/** The names the two examples use, used as they are. */
export const Example = {
  imageCache: "ubuntu-noble",
  imageId: "ubuntu-24.04",
  pod: "vm-web-1",
  instanceDir: "/var/lib/basecache/instances/vm-web-1",
  disk: "/var/lib/basecache/instances/vm-web-1/disk.qcow2",
  /** The label deploy/examples/imagecache.yaml selects nodes by (what KubeVirt's virt-handler puts on nodes that may run VMs). */
  nodeLabel: "kubevirt.io/schedulable",
} as const;

/** deploy/examples/imagecache.yaml with its URL set to `url` (and its retention, when given). */
export async function exampleImageCache(url: string, unusedFor?: string): Promise<ManifestObject> {
  const [ic] = parseManifests(await readFile(join(repoRoot, "deploy/examples/imagecache.yaml"), "utf8"));
  assert.ok(ic);
  const spec = ic.spec as { images: { id: string; source: { http: { url: string } } }[]; retention: { unusedFor: string } };
  assert.deepEqual(spec.images.map((i) => i.id), [Example.imageId]);
  const [image] = spec.images;
  if (image) image.source.http.url = url;
  if (unusedFor !== undefined) spec.retention.unusedFor = unusedFor;
  return ic;
}

/**
 * The VM pod example, every image `image`. The VM itself is stood in for by what a VM does with the disk first:
 * open overlay and base read-only with explicit formats (`qemu-img compare`), then stay up. The pod is Ready only
 * once the comparison succeeded: the readiness probe sees `sleep` as the container's process 1 only after
 * `exec`, and a failed comparison exits the container instead. The KVM device limit goes with the VM (no device
 * plugin here).
 */
export async function vmPod(image: string): Promise<ManifestObject> {
  const [pod] = parseManifests(await readFile(join(repoRoot, "deploy/examples/vm-pod.yaml"), "utf8"));
  assert.ok(pod);
  const spec = pod.spec as V1PodSpec;
  const containers: V1Container[] = [...(spec.initContainers ?? []), ...spec.containers];
  for (const c of containers) c.image = image;
  const vm = spec.containers.find((c) => c.name === "vm");
  assert.ok(vm?.resources?.limits, "the example has its VM container");
  vm.command = ["/bin/sh", "-c"];
  vm.args = [`qemu-img compare -f qcow2 -F raw ${Example.disk} ${basePath(Example.imageId)} && exec sleep infinity`];
  vm.readinessProbe = { exec: { command: ["/bin/sh", "-c", 'test "$(cat /proc/1/comm)" = sleep'] }, periodSeconds: 1 };
  delete vm.resources.limits["devices.kubevirt.io/kvm"];
  return pod;
}
