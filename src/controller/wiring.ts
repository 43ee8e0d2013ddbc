/**
 * Maps informer events to queue keys; no event is handled here, only turned into the names of what to
 * reconcile. `node:<name>` plans that node's NodeImageCache; `imagecache:<name>` rolls up that ImageCache.
 */
import { isDeepStrictEqual } from "node:util";
import { MaxWantedBy } from "../core/desired.js";
import type { RawObject } from "../kube/client.js";
import type { WorkQueue } from "../kube/work-queue.js";
import type { ControllerInformers } from "./context.js";

export const nodeKey = (name: string) => `node:${name}`;
export const imageCacheKey = (name: string) => `imagecache:${name}`;
export const versionsKey = (name: string) => `versions:${name}`;

function nameOf(obj: RawObject | undefined): string {
  return obj?.metadata?.name ?? "";
}

function specImages(obj: RawObject | undefined): { wantedBy?: string[] }[] {
  return (obj?.spec as { images?: { wantedBy?: string[] }[] } | undefined)?.images ?? [];
}

function wantedBy(obj: RawObject | undefined): string[] {
  return specImages(obj).flatMap((i) => i.wantedBy ?? []);
}

// A full wantedBy list may leave out ImageCaches that want the image too; they must still see its status.
function mayBeTruncated(obj: RawObject | undefined): boolean {
  return specImages(obj).some((i) => (i.wantedBy?.length ?? 0) >= MaxWantedBy);
}

function labelsOf(obj: RawObject | undefined): unknown {
  return obj?.metadata?.labels ?? {};
}

export function wireEvents(informers: ControllerInformers, queue: WorkQueue): void {
  const allNodes = () => {
    for (const n of informers.nodes.list()) queue.add(nodeKey(nameOf(n)));
  };
  const allImageCaches = () => {
    for (const ic of informers.imageCaches.list()) queue.add(imageCacheKey(nameOf(ic)));
  };

  // An ImageCache's spec can change what every node wants and which definitions conflict.
  // Its tracked images are checked at once (a new leader finds their records in status and waits out the interval).
  informers.imageCaches.on("add", (ic) => {
    allNodes();
    allImageCaches();
    queue.add(imageCacheKey(nameOf(ic)));
    queue.add(versionsKey(nameOf(ic)));
  });
  informers.imageCaches.on("update", (ic, old) => {
    const specChanged = ic.metadata?.generation !== old?.metadata?.generation || ic.metadata?.deletionTimestamp !== old?.metadata?.deletionTimestamp;
    if (specChanged) {
      allNodes();
      allImageCaches();
      queue.add(versionsKey(nameOf(ic)));
    }
    queue.add(imageCacheKey(nameOf(ic)));
  });
  informers.imageCaches.on("delete", () => {
    allNodes();
    allImageCaches();
  });

  // A node's labels decide what it holds, and how many nodes each ImageCache selects.
  informers.nodes.on("add", (n) => {
    queue.add(nodeKey(nameOf(n)));
    allImageCaches();
  });
  informers.nodes.on("update", (n, old) => {
    if (!isDeepStrictEqual(labelsOf(n), labelsOf(old))) {
      queue.add(nodeKey(nameOf(n)));
      allImageCaches();
    } else if (n.metadata?.uid !== old?.metadata?.uid) {
      queue.add(nodeKey(nameOf(n)));
    }
  });
  informers.nodes.on("delete", (n) => {
    queue.add(nodeKey(nameOf(n)));
    allImageCaches();
  });

  // A NodeImageCache: its spec is ours (repair drift), its status rolls up into the ImageCaches that want it.
  const onNic = (nic: RawObject, old: RawObject | undefined) => {
    const metaChanged = !isDeepStrictEqual(labelsOf(nic), labelsOf(old)) || !isDeepStrictEqual(nic.metadata?.ownerReferences, old?.metadata?.ownerReferences);
    if (!old || nic.metadata?.generation !== old.metadata?.generation || metaChanged) queue.add(nodeKey(nameOf(nic)));
    if (mayBeTruncated(nic) || mayBeTruncated(old)) allImageCaches();
    else for (const name of new Set([...wantedBy(nic), ...wantedBy(old)])) queue.add(imageCacheKey(name));
  };
  // A ConfigMap of public keys: every NodeImageCache whose images name it carries a copy of its keys.
  for (const ev of ["add", "update", "delete"] as const) informers.configMaps?.on(ev, allNodes);

  informers.nodeImageCaches.on("add", (nic) => onNic(nic, undefined));
  informers.nodeImageCaches.on("update", onNic);
  informers.nodeImageCaches.on("delete", (nic) => {
    queue.add(nodeKey(nameOf(nic)));
    if (mayBeTruncated(nic)) allImageCaches();
    else for (const name of new Set(wantedBy(nic))) queue.add(imageCacheKey(name));
  });
}
