/**
 * What the demo prints about the cluster: one line per (node, image) from NodeImageCache statuses, and a
 * one-line summary of an ImageCache. Pure: the demo reads the objects and passes them in.
 */
import type { ImageCache, NodeImageCache } from "../src/kube/api-types.js";
import { formatBytes } from "../src/core/quantity.js";

/** The state of one image on one node, as its agent last reported it. */
export interface NodeImageRow {
  node: string;
  id: string;
  /** The phase in status, or "Wanted" when the spec lists the image but the agent has not reported it yet. */
  phase: string;
  detail: string;
}

/** One row per image wanted in spec or reported in status, sorted by node then id. */
export function planNodeRows(caches: readonly NodeImageCache[]): NodeImageRow[] {
  const rows: NodeImageRow[] = [];
  for (const nic of caches) {
    const reported = new Map((nic.status?.images ?? []).map((s) => [s.id, s]));
    const ids = new Set([...nic.spec.images.map((i) => i.id), ...reported.keys()]);
    for (const id of ids) {
      const s = reported.get(id);
      if (!s) {
        rows.push({ node: nic.metadata.name, id, phase: "Wanted", detail: "not reported by the agent yet" });
        continue;
      }
      rows.push({ node: nic.metadata.name, id, phase: s.phase, detail: describeImage(s) });
    }
  }
  return rows.sort((a, b) => (a.node === b.node ? cmp(a.id, b.id) : cmp(a.node, b.node)));
}

function describeImage(s: NonNullable<NonNullable<NodeImageCache["status"]>["images"]>[number]): string {
  if (s.phase === "Failed") return `${s.reason ?? "Failed"}: ${s.message ?? ""}`.trim();
  if (s.phase === "Ready") return s.virtualSize !== undefined ? `base ${s.base.slice(0, 12)}…, virtual size ${formatBytes(s.virtualSize)}` : `base ${s.base.slice(0, 12)}…`;
  if (s.bytesDone !== undefined && s.bytesTotal) return `${formatBytes(s.bytesDone)} of ${formatBytes(s.bytesTotal)} (${Math.floor((100 * s.bytesDone) / s.bytesTotal)}%)`;
  if (s.bytesDone !== undefined) return `${formatBytes(s.bytesDone)}`;
  return "";
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The rows whose phase or detail differ from `previous` (keyed by node and id), to print only what changed. */
export function planChangedRows(previous: ReadonlyMap<string, string>, rows: readonly NodeImageRow[]): { changed: NodeImageRow[]; next: Map<string, string> } {
  const next = new Map<string, string>();
  const changed: NodeImageRow[] = [];
  for (const r of rows) {
    const key = `${r.node}\u0000${r.id}`;
    const value = `${r.phase}\u0000${r.detail}`;
    next.set(key, value);
    if (previous.get(key) !== value) changed.push(r);
  }
  return { changed, next };
}

/** A fixed-width line for a row. */
export function formatRow(r: NodeImageRow): string {
  return `${r.node.padEnd(14)} ${r.id.padEnd(14)} ${r.phase.padEnd(12)} ${r.detail}`.trimEnd();
}

/** `READY 1/2, Ready=False (NodesNotReady): 1 of 2 nodes hold every image` from an ImageCache's status. */
export function summarizeImageCache(ic: ImageCache): string {
  const st = ic.status;
  if (!st || st.observedGeneration === undefined) return `${ic.metadata.name}: no status yet`;
  const ready = st.conditions?.find((c) => c.type === "Ready");
  const cond = ready ? `, Ready=${ready.status} (${ready.reason}): ${ready.message}` : "";
  return `${ic.metadata.name}: READY ${st.readyNodes ?? 0}/${st.desiredNodes ?? 0}${cond}`;
}

/** True when every node the ImageCache selects holds every image, for the spec generation it last saw. */
export function isImageCacheReady(ic: ImageCache): boolean {
  const st = ic.status;
  if (!st || st.observedGeneration !== ic.metadata.generation) return false;
  const ready = st.conditions?.find((c) => c.type === "Ready");
  return ready?.status === "True" && (st.desiredNodes ?? 0) > 0 && st.readyNodes === st.desiredNodes;
}
