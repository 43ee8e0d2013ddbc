/**
 * Events about this node's NodeImageCache, from the fetches and from GC alike: each is recorded about the
 * object as the informer holds it when the event happens, and dropped while there is none.
 */
import { ApiVersion, NodeImageCacheKind, type NodeImageCache } from "../kube/api-types.js";
import type { EventRecorder, EventType } from "../kube/events.js";

export class NodeEvents {
  constructor(
    private readonly recorder: EventRecorder | undefined,
    private readonly nodeImageCache: () => NodeImageCache | undefined,
  ) {}

  /** Records an Event about the node's NodeImageCache. */
  record(type: EventType, reason: string, action: string, note: string): void {
    const nic = this.nodeImageCache();
    if (!nic || !this.recorder) return;
    const subject = { apiVersion: ApiVersion, kind: NodeImageCacheKind, name: nic.metadata.name, ...(nic.metadata.uid ? { uid: nic.metadata.uid } : {}) };
    this.recorder.record(subject, type, reason, action, note);
  }
}
