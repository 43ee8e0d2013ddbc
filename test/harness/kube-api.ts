/** Small typed API helpers for integration tests and benchmarks: nodes, ImageCaches, NodeImageCaches. */
import { CoreV1Api, CustomObjectsApi, RbacAuthorizationV1Api, type KubeConfig } from "@kubernetes/client-node";
import { mergePatchOptions } from "../../src/kube/client.js";
import type { ImageCacheSpec, ImageCacheStatus, NodeImageCache, NodeImageCacheStatus } from "../../src/kube/api-types.js";
import type { ControlPlane } from "./control-plane.js";

const g = { group: "basecache.io", version: "v1alpha1" };

export interface StoredImageCache {
  metadata: { name: string; generation: number; resourceVersion: string; uid: string };
  spec: ImageCacheSpec;
  status?: ImageCacheStatus;
}
export type StoredNodeImageCache = NodeImageCache & { metadata: { ownerReferences?: { kind: string; name: string; uid: string }[]; resourceVersion: string } };

export class Api {
  readonly core: CoreV1Api;
  readonly custom: CustomObjectsApi;
  constructor(readonly kc: KubeConfig) {
    this.core = kc.makeApiClient(CoreV1Api);
    this.custom = kc.makeApiClient(CustomObjectsApi);
  }

  async createNode(name: string, labels: Record<string, string> = {}): Promise<string> {
    const n = await this.core.createNode({ body: { metadata: { name, labels } } });
    return n.metadata?.uid ?? "";
  }
  async setNodeLabels(name: string, labels: Record<string, string | null>): Promise<void> {
    await this.core.patchNode({ name, body: { metadata: { labels } } }, mergePatchOptions);
  }
  async deleteNode(name: string): Promise<void> {
    await this.core.deleteNode({ name });
  }

  async createImageCache(name: string, spec: ImageCacheSpec): Promise<StoredImageCache> {
    return (await this.custom.createClusterCustomObject({ ...g, plural: "imagecaches", body: { apiVersion: "basecache.io/v1alpha1", kind: "ImageCache", metadata: { name }, spec } })) as StoredImageCache;
  }
  async patchImageCache(name: string, spec: Partial<ImageCacheSpec>): Promise<void> {
    await this.custom.patchClusterCustomObject({ ...g, plural: "imagecaches", name, body: { spec } }, mergePatchOptions);
  }
  async deleteImageCache(name: string): Promise<void> {
    await this.custom.deleteClusterCustomObject({ ...g, plural: "imagecaches", name });
  }
  async imageCache(name: string): Promise<StoredImageCache> {
    return (await this.custom.getClusterCustomObject({ ...g, plural: "imagecaches", name })) as StoredImageCache;
  }

  /** The NodeImageCache, or undefined when there is none. */
  async nic(name: string): Promise<StoredNodeImageCache | undefined> {
    try {
      return (await this.custom.getClusterCustomObject({ ...g, plural: "nodeimagecaches", name })) as StoredNodeImageCache;
    } catch (err) {
      if ((err as { code?: number }).code === 404) return undefined;
      throw err;
    }
  }
  async nicImageIds(name: string): Promise<string[] | undefined> {
    return (await this.nic(name))?.spec.images.map((i) => i.id);
  }
  async writeNicStatus(name: string, status: NodeImageCacheStatus): Promise<void> {
    await this.custom.patchClusterCustomObjectStatus({ ...g, plural: "nodeimagecaches", name, body: { status } }, mergePatchOptions);
  }
  async listNics(): Promise<StoredNodeImageCache[]> {
    return ((await this.custom.listClusterCustomObject({ ...g, plural: "nodeimagecaches" })) as { items: StoredNodeImageCache[] }).items;
  }
  async listImageCaches(): Promise<StoredImageCache[]> {
    return ((await this.custom.listClusterCustomObject({ ...g, plural: "imagecaches" })) as { items: StoredImageCache[] }).items;
  }
}

/**
 * A client for `node` as the agent will have it: a service-account token bound to a pod on that node, allowed
 * to read NodeImageCaches and write their status.
 */
export async function agentApi(cp: ControlPlane, node: string): Promise<Api> {
  const rbac = cp.adminConfig().makeApiClient(RbacAuthorizationV1Api);
  const ignoreExists = (err: unknown) => {
    if ((err as { code?: number }).code !== 409) throw err;
  };
  await rbac
    .createClusterRole({
      body: {
        metadata: { name: "test-agent" },
        rules: [
          { apiGroups: ["basecache.io"], resources: ["nodeimagecaches"], verbs: ["get", "list", "watch"] },
          { apiGroups: ["basecache.io"], resources: ["nodeimagecaches/status"], verbs: ["get", "patch", "update"] },
        ],
      },
    })
    .catch(ignoreExists);
  await rbac
    .createClusterRoleBinding({
      body: { metadata: { name: "test-agent" }, roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "test-agent" }, subjects: [{ kind: "ServiceAccount", name: "agent", namespace: "basecache-test" }] },
    })
    .catch(ignoreExists);
  const { kubeConfig } = await cp.serviceAccountConfig("basecache-test", "agent", { nodeName: node });
  return new Api(kubeConfig);
}

export const sha = (c: string) => `sha256:${c.repeat(64)}`;
export const httpImage = (id: string, url = `https://images.example/${id}.qcow2`) => ({ id, source: { http: { url } } });
