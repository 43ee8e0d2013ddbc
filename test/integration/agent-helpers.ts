/** Helpers shared by the agent and GC integration tests: NodeImageCaches written as the controller would. */
import { CoreV1Api } from "@kubernetes/client-node";
import type { NodeImageStatus } from "../../src/kube/api-types.js";
import { mergePatchOptions } from "../../src/kube/client.js";
import type { Api } from "../harness/kube-api.js";

const g = { group: "basecache.io", version: "v1alpha1", plural: "nodeimagecaches" };
export interface WantedImageInput {
  id: string;
  url: string;
  checksum?: string;
  maxVirtualSize?: string;
  unusedFor?: string;
}

function spec(node: string, wanted: WantedImageInput[]) {
  return {
    nodeName: node,
    images: wanted.map((w) => ({
      id: w.id,
      source: { http: { url: w.url } },
      wantedBy: ["test"],
      ...(w.checksum ? { checksum: w.checksum } : {}),
      ...(w.maxVirtualSize ? { maxVirtualSize: w.maxVirtualSize } : {}),
      ...(w.unusedFor ? { unusedFor: w.unusedFor } : {}),
    })),
  };
}

export async function createNic(admin: Api, node: string, wanted: WantedImageInput[]): Promise<void> {
  await admin.custom.createClusterCustomObject({ ...g, body: { apiVersion: "basecache.io/v1alpha1", kind: "NodeImageCache", metadata: { name: node }, spec: spec(node, wanted) } });
}

export async function setNicImages(admin: Api, node: string, wanted: WantedImageInput[]): Promise<void> {
  await admin.custom.patchClusterCustomObject({ ...g, name: node, body: { spec: spec(node, wanted) } }, mergePatchOptions);
}

export async function annotateNic(admin: Api, node: string, annotations: Record<string, string>): Promise<void> {
  await admin.custom.patchClusterCustomObject({ ...g, name: node, body: { metadata: { annotations } } }, mergePatchOptions);
}

export async function imageStatus(admin: Api, node: string, id: string): Promise<NodeImageStatus | undefined> {
  return (await admin.nic(node))?.status?.images?.find((i) => i.id === id);
}

/** Events (events.k8s.io/v1) about a NodeImageCache, in the default namespace. */
export async function eventsAbout(admin: Api, node: string): Promise<{ reason: string; note: string; type: string }[]> {
  const list = (await admin.custom.listNamespacedCustomObject({ group: "events.k8s.io", version: "v1", namespace: "default", plural: "events" })) as {
    items: { reason?: string; note?: string; type?: string; regarding?: { kind?: string; name?: string } }[];
  };
  return list.items
    .filter((e) => e.regarding?.kind === "NodeImageCache" && e.regarding.name === node)
    .map((e) => ({ reason: e.reason ?? "", note: e.note ?? "", type: e.type ?? "" }));
}

/** A pod on `node` declaring the images it uses, as a VM pod would. */
export async function createPodUsing(admin: Api, node: string, name: string, ids: string[]): Promise<void> {
  const core = admin.kc.makeApiClient(CoreV1Api);
  // No controller manager runs in the test control plane, so the default service account must be made by hand.
  await core.createNamespacedServiceAccount({ namespace: "default", body: { metadata: { name: "default" } } }).catch((e: { code?: number }) => {
    if (e.code !== 409) throw e;
  });
  await core.createNamespacedPod({
    namespace: "default",
    body: {
      metadata: { name, annotations: { "basecache.io/images": ids.join(",") } },
      spec: { nodeName: node, automountServiceAccountToken: false, containers: [{ name: "vm", image: "basecache.invalid/vm:test" }] },
    },
  });
}
