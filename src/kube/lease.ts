/**
 * Leader election on a coordination.k8s.io/v1 Lease, after client-go's leaderelection package: acquire when the
 * Lease is free or its holder has not renewed within the lease duration (measured on our own clock, from when we
 * last saw the record change, so clock skew between hosts does not matter); renew every retry period; give up
 * leadership when no renewal succeeded within the renew deadline; release on a graceful stop so that a standby
 * takes over at once. Updates carry the resourceVersion, so two candidates can never both win.
 */
import { hostname } from "node:os";
import { randomUUID } from "node:crypto";
import { asError } from "../lib/errors.js";
import { monotonicClock, sleep, systemClock, type Clock } from "../lib/clock.js";
import { silentLogger, type Logger } from "../lib/log.js";
import { isAlreadyExists, isConflict, isNotFound, type NamespacedResource, type RawObject } from "./client.js";

export interface LeaseSpecJson {
  holderIdentity?: string | null;
  leaseDurationSeconds?: number;
  acquireTime?: string | null;
  renewTime?: string | null;
  leaseTransitions?: number;
}

export interface LeaseJson extends RawObject {
  spec?: LeaseSpecJson;
}

export interface LeaderElectionOptions {
  leases: NamespacedResource;
  namespace: string;
  name: string;
  /** Unique per process; default `<hostname>_<uuid>`. */
  identity?: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  log?: Logger;
  /** Stamps acquire and renew times; default the system clock. */
  clock?: Clock;
  /** Measures how long a holder has not renewed and how long since our last renewal; default performance.now. */
  monotonic?: Clock;
  /** Told whenever this process starts or stops leading, for metrics. */
  onLeaderChange?: (leading: boolean) => void;
}

/** RFC 3339 with microseconds, as metav1.MicroTime serialises. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}

export function defaultIdentity(): string {
  return `${hostname()}_${randomUUID()}`;
}

export class LeaderElector {
  readonly identity: string;
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly mono: Clock;
  private observed: { record: string; at: number } | undefined;
  private current: LeaseJson | undefined;

  constructor(private readonly opts: LeaderElectionOptions) {
    this.identity = opts.identity ?? defaultIdentity();
    this.leaseDurationMs = opts.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = opts.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = opts.retryPeriodMs ?? 2_000;
    if (!(this.leaseDurationMs > this.renewDeadlineMs && this.renewDeadlineMs > this.retryPeriodMs)) {
      throw new RangeError("Cannot elect a leader: need leaseDuration > renewDeadline > retryPeriod");
    }
    this.log = (opts.log ?? silentLogger).child({ lease: `${opts.namespace}/${opts.name}`, identity: this.identity });
    this.clock = opts.clock ?? systemClock;
    this.mono = opts.monotonic ?? monotonicClock;
  }

  /** Waits until this process holds the Lease; resolves false when `signal` aborts first. */
  async acquire(signal: AbortSignal): Promise<boolean> {
    this.log.info("Waiting to acquire the leader lease");
    while (!signal.aborted) {
      if (await this.tryAcquireOrRenew()) {
        this.log.info("Acquired the leader lease");
        this.opts.onLeaderChange?.(true);
        return true;
      }
      await sleep(this.retryPeriodMs * (1 + 0.2 * Math.random()), signal).catch(() => undefined);
    }
    return false;
  }

  /**
   * Renews the Lease until `signal` aborts (then releases it and resolves "released") or a renewal deadline
   * passes without success (resolves "lost"; the caller should exit so that a fresh process starts over).
   */
  async hold(signal: AbortSignal): Promise<"released" | "lost"> {
    // Durations on the monotonic clock, so that a stepped wall clock cannot end leadership (or prolong it).
    let lastRenew = this.mono.now();
    while (!signal.aborted) {
      await sleep(this.retryPeriodMs, signal).catch(() => undefined);
      if (signal.aborted) break;
      if (await this.tryAcquireOrRenew()) {
        lastRenew = this.mono.now();
        continue;
      }
      const sinceRenewMs = this.mono.now() - lastRenew;
      if (sinceRenewMs > this.renewDeadlineMs) {
        this.log.error({ sinceRenewMs: Math.round(sinceRenewMs) }, "Lost the leader lease");
        this.opts.onLeaderChange?.(false);
        return "lost";
      }
    }
    await this.release();
    this.opts.onLeaderChange?.(false);
    return "released";
  }

  /** Gives the Lease up if we hold it, so that a standby need not wait for it to expire. */
  async release(): Promise<void> {
    const lease = this.current;
    if (!lease || lease.spec?.holderIdentity !== this.identity) return;
    const now = this.clock.now();
    try {
      await this.opts.leases.replace(this.opts.namespace, { ...lease, spec: { ...lease.spec, holderIdentity: null, leaseDurationSeconds: 1, renewTime: microTime(now), acquireTime: microTime(now) } }, "basecache-leader-election");
      this.log.info("Released the leader lease");
    } catch (e) {
      this.log.warn({ err: asError(e) }, "Cannot release the leader lease; it expires by itself");
    }
    this.current = undefined;
  }

  private desiredSpec(prior: LeaseSpecJson | undefined, now: number): LeaseSpecJson {
    const same = prior?.holderIdentity === this.identity;
    return {
      holderIdentity: this.identity,
      leaseDurationSeconds: Math.ceil(this.leaseDurationMs / 1000),
      acquireTime: same && prior?.acquireTime ? prior.acquireTime : microTime(now),
      renewTime: microTime(now),
      leaseTransitions: same ? (prior?.leaseTransitions ?? 0) : (prior?.leaseTransitions ?? -1) + 1,
    };
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const { leases, namespace, name } = this.opts;
    const now = this.clock.now();
    const mono = this.mono.now();
    try {
      let lease: LeaseJson;
      try {
        lease = await leases.get(namespace, name);
      } catch (e) {
        if (!isNotFound(e)) throw e;
        const body: LeaseJson = { apiVersion: "coordination.k8s.io/v1", kind: "Lease", metadata: { name, namespace }, spec: this.desiredSpec(undefined, now) };
        this.current = await leases.create(namespace, body, "basecache-leader-election");
        return true;
      }
      const spec = lease.spec ?? {};
      const record = JSON.stringify([spec.holderIdentity, spec.renewTime, spec.leaseDurationSeconds]);
      if (this.observed?.record !== record) this.observed = { record, at: mono };
      const holder = spec.holderIdentity ?? "";
      const durationMs = (spec.leaseDurationSeconds ?? 0) * 1000;
      if (holder !== "" && holder !== this.identity && this.observed.at + durationMs > mono) return false;
      this.current = await leases.replace(namespace, { ...lease, spec: this.desiredSpec(spec, now) }, "basecache-leader-election");
      return true;
    } catch (e) {
      if (isConflict(e) || isAlreadyExists(e)) this.log.debug("Another candidate updated the lease first");
      else this.log.warn({ err: asError(e) }, "Cannot acquire or renew the leader lease");
      return false;
    }
  }
}
