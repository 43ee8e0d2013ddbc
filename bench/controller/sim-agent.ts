/**
 * Simulated node agents for bench/controller: each node fetches its images two at a time over a shared link,
 * converts them, and some fail; time is virtual (one tick = one simulated second). Two reporters turn the same
 * timeline into status writes: the agent's coalescing policy (src/core/progress.ts, used as is) and a naive
 * reporter that writes whenever any image's progress crosses another whole percent.
 */
import { baseNameFor } from "../../src/core/names.js";
import { canonical, decideStatusWrite, DefaultWritePolicy, type WriteState } from "../../src/core/progress.js";
import type { NodeImageCacheStatus, NodeImageStatus } from "../../src/core/api-records.js";

/** mulberry32: a small seeded PRNG, so every run simulates the same cluster. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface SimImage {
  id: string;
  size: number;
  virtualSize: number;
  done: number;
  phase: NodeImageStatus["phase"];
  convertLeft: number;
  /** Fails when `done` reaches this many bytes (undefined: never). */
  failAt: number | undefined;
  reason?: string;
  message?: string;
}

export interface SimOptions {
  /** Link speed shared by the node's concurrent downloads, bytes per second. */
  linkBytesPerSecond: number;
  concurrency: number;
  failureRate: number;
}

export const DefaultSim: SimOptions = { linkBytesPerSecond: 110e6, concurrency: 2, failureRate: 0.005 };

const GiB = 1024 ** 3;

/** One node's agent in virtual time. */
export class SimNode {
  readonly images: SimImage[];
  private readonly link: number;
  private startTick: number;
  readonly coalesced: WriteState = {};
  private naiveLast = "";
  coalescedWrites = 0;
  naiveWrites = 0;
  /** Writes a naive reporter makes, counted in step() whatever the tick length. */
  naiveCount = 0;

  constructor(
    readonly name: string,
    imageIds: readonly string[],
    seed: number,
    private readonly opts: SimOptions = DefaultSim,
    /** Image id -> definitionHash, stamped on each entry as the real agent does. */
    private readonly definitions: ReadonlyMap<string, string> = new Map(),
  ) {
    const rnd = prng(seed);
    // Cloud base images: 300 MB to 1.5 GB compressed, 2 to 20 GiB virtual.
    this.images = imageIds.map((id) => {
      const size = Math.round(300e6 + rnd() * 1.2e9);
      return { id, size, virtualSize: Math.round((2 + rnd() * 18) * GiB), done: 0, phase: "Pending", convertLeft: 2 + Math.floor(rnd() * 5), failAt: rnd() < opts.failureRate ? Math.round(size * rnd()) : undefined };
    });
    this.link = opts.linkBytesPerSecond * (0.8 + 0.4 * rnd());
    this.startTick = Math.floor(rnd() * 5);
  }

  get finished(): boolean {
    return this.images.every((i) => i.phase === "Ready" || i.phase === "Failed");
  }

  get readyAll(): boolean {
    return this.images.every((i) => i.phase === "Ready");
  }

  /**
   * Advances `dt` simulated seconds (ticks of `dt`; `tick` counts them). Also counts the writes a naive
   * reporter would make: one per whole percent an image crosses and one per phase change.
   */
  step(tick: number, dt = 1): void {
    if (tick * dt < this.startTick) return;
    const before = this.images.map((i) => [i.phase, Math.floor((100 * i.done) / i.size)] as const);
    this.advance(dt);
    this.images.forEach((i, k) => {
      const [phase, pct] = before[k]!;
      this.naiveCount += Math.max(0, Math.floor((100 * i.done) / i.size) - pct) + (i.phase !== phase ? 1 : 0);
    });
  }

  private advance(dt: number): void {
    for (const img of this.images) {
      if (img.phase === "Converting" && (img.convertLeft -= dt) <= 1e-9) img.phase = "Ready";
    }
    let active = this.images.filter((i) => i.phase === "Downloading");
    for (const img of this.images) {
      if (active.length >= this.opts.concurrency) break;
      if (img.phase === "Pending") {
        img.phase = "Downloading";
        active = [...active, img];
      }
    }
    const share = (this.link * dt) / Math.max(1, active.length);
    for (const img of active) {
      img.done = Math.min(img.size, img.done + share);
      if (img.failAt !== undefined && img.done >= img.failAt) {
        img.phase = "Failed";
        img.reason = "ChecksumMismatch";
        img.message = `Checksum of image "${img.id}" does not match the declared sha256`;
      } else if (img.done >= img.size) img.phase = "Converting";
    }
  }

  /** The status as the agent would want it now; `quantum` rounds bytesDone down to that fraction of the total. */
  status(generation: number, quantum = 0): NodeImageCacheStatus {
    let cache = 0;
    const images = this.images.map((i) => {
      const done = quantum > 0 ? Math.floor(i.done / (i.size * quantum)) * Math.floor(i.size * quantum) : Math.floor(i.done);
      cache += i.phase === "Ready" ? i.virtualSize / 8 : done;
      const s: NodeImageStatus = { id: i.id, base: baseNameFor(i.id), phase: i.phase, bytesDone: i.phase === "Ready" ? i.size : done, bytesTotal: i.size, observedGeneration: generation };
      const definition = this.definitions.get(i.id);
      if (definition) s.definition = definition;
      if (i.phase === "Ready") s.virtualSize = i.virtualSize;
      if (i.reason) s.reason = i.reason;
      if (i.message) s.message = i.message;
      return s;
    });
    return {
      observedGeneration: generation,
      images,
      disk: { cacheBytes: Math.round(cache), filesystemBytes: 2 * 1024 * GiB, filesystemFreeBytes: Math.round(2 * 1024 * GiB - cache) },
    };
  }

  /** The coalescing reporter: the status to write at virtual time `nowMs`, or undefined. */
  coalescedWrite(generation: number, nowMs: number): NodeImageCacheStatus | undefined {
    const wanted = this.status(generation);
    const d = decideStatusWrite(wanted, this.coalesced, nowMs, DefaultWritePolicy);
    if (d.action !== "write") return undefined;
    this.coalesced.written = wanted;
    this.coalesced.writtenAt = nowMs;
    this.coalescedWrites++;
    return wanted;
  }

  /** The naive reporter: writes whenever the status, with progress in whole percent, changed (call with fine ticks). */
  naiveWrite(generation: number): NodeImageCacheStatus | undefined {
    const wanted = this.status(generation, 0.01);
    const key = canonical(wanted);
    if (key === this.naiveLast) return undefined;
    this.naiveLast = key;
    this.naiveWrites++;
    return wanted;
  }
}

/** Realistic image ids and sources for the ImageCache under test. */
export function benchImages(n: number): { id: string; source: { http: { url: string } }; checksum: string; maxVirtualSize: string }[] {
  const distros = ["ubuntu-24.04-server-cloudimg-amd64", "debian-13-genericcloud-amd64", "fedora-cloud-base-generic-42", "rocky-9.6-genericcloud-base", "windows-server-2025-datacenter-eval"];
  return Array.from({ length: n }, (_, i) => {
    const id = `${distros[i % distros.length]}-2026${String(1 + (i % 12)).padStart(2, "0")}${String(10 + i).padStart(2, "0")}-v${i}`;
    const hex = baseNameFor(id).repeat(2).slice(0, 64);
    return { id, source: { http: { url: `https://images.mirror.example.internal/cloud/${id}/disk-image.qcow2` } }, checksum: `sha256:${hex}`, maxVirtualSize: "40Gi" };
  });
}
