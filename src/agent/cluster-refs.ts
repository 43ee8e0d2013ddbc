/**
 * Wanted images and pod uses read once from the cluster, for `basecache gc` run by hand with a person's
 * kubeconfig (one that may list pods; the agent's own token may not, and then every base is kept). A failed
 * read leaves that side unknown, which keeps every base (see docs/design/gc-rules.md).
 */
import { DefaultRetentionMs } from "../core/gc.js";
import { call, isNotFound, loadKubeConfig, makeClients } from "../kube/client.js";
import { parseNodeImageCache } from "../kube/parse.js";
import type { Logger } from "../lib/log.js";
import type { GcReferences } from "./gc-pass.js";
import { podUsesFrom } from "../core/pod-uses.js";
import { wantedFrom } from "./gc-runner.js";

export async function readClusterReferences(opts: { node: string; kubeconfig?: string; log: Logger; defaultRetentionMs?: number }): Promise<GcReferences> {
  const clients = makeClients(loadKubeConfig(opts.kubeconfig));
  const retention = opts.defaultRetentionMs ?? DefaultRetentionMs;
  const wanted = async () => {
    try {
      return wantedFrom(parseNodeImageCache(await clients.nodeImageCaches.get(opts.node)), true, retention);
    } catch (e) {
      if (isNotFound(e)) return [];
      opts.log.warn({ err: e }, "Cannot read this node's NodeImageCache: wanted images unknown");
      return undefined;
    }
  };
  const podUses = async () => {
    try {
      const r = await call("Cannot list pods", () => clients.core.listPodForAllNamespaces({ fieldSelector: `spec.nodeName=${opts.node}` }));
      return podUsesFrom(r.items.map((p) => ({ name: p.metadata?.name ?? "", namespace: p.metadata?.namespace ?? "", annotations: p.metadata?.annotations ?? {} })));
    } catch (e) {
      opts.log.warn({ err: e }, "Cannot list pods on this node: uses unknown");
      return undefined;
    }
  };
  // Read afresh on each call, so the re-check before a removal sees pods that appeared during the pass.
  return { wanted, podUses };
}
