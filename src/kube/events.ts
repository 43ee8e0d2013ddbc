/**
 * Kubernetes Events (events.k8s.io/v1) with aggregation: the first occurrence of a (object, type, reason) in a
 * window creates an Event; repeats only bump its series count, written at most once per `seriesFlushMs`, so a
 * flapping condition cannot flood the API server. Recording never throws: an Event is best effort.
 */
import { systemClock, type Clock } from "../lib/clock.js";
import { asError } from "../lib/errors.js";
import { silentLogger, type Logger } from "../lib/log.js";
import type { NamespacedResource } from "./client.js";
import { microTime } from "./lease.js";

export interface EventSubject {
  apiVersion: string;
  kind: string;
  name: string;
  uid?: string;
  namespace?: string;
}

export type EventType = "Normal" | "Warning";

export interface EventRecorderOptions {
  events: NamespacedResource;
  /** e.g. `basecache.io/controller` */
  controller: string;
  /** This process, e.g. its leader-election identity. */
  instance: string;
  /** Where Events about cluster-scoped objects go; default "default", as client-go does. */
  namespace?: string;
  windowMs?: number;
  seriesFlushMs?: number;
  log?: Logger;
  /** At most this many distinct aggregates are remembered; the oldest go first. */
  maxTracked?: number;
  /** Stamps Events and measures their windows; default the system clock. */
  clock?: Clock;
}

interface Aggregate {
  namespace: string;
  eventName: string;
  firstAt: number;
  count: number;
  flushedCount: number;
  lastFlushAt: number;
  created: Promise<boolean>;
}

export class EventRecorder {
  private readonly seen = new Map<string, Aggregate>();
  private readonly log: Logger;

  constructor(private readonly opts: EventRecorderOptions) {
    this.log = (opts.log ?? silentLogger).child({ component: "events" });
  }

  /** Records an Event about `subject`; `action` says what the reporter did, `note` is for humans (max 1 KiB). */
  record(subject: EventSubject, type: EventType, reason: string, action: string, note: string): void {
    const now = (this.opts.clock ?? systemClock).now();
    const key = `${subject.kind}/${subject.namespace ?? ""}/${subject.name}/${subject.uid ?? ""}/${type}/${reason}`;
    const agg = this.seen.get(key);
    if (agg && now - agg.firstAt < (this.opts.windowMs ?? 600_000)) {
      agg.count++;
      if (now - agg.lastFlushAt >= (this.opts.seriesFlushMs ?? 60_000)) void this.flushSeries(agg, now);
      return;
    }
    const namespace = subject.namespace ?? this.opts.namespace ?? "default";
    const eventName = `${subject.name}.${now.toString(16)}${Math.floor(Math.random() * 0xffff).toString(16)}`;
    const created = this.create(namespace, eventName, subject, type, reason, action, note, now);
    this.seen.delete(key);
    this.seen.set(key, { namespace, eventName, firstAt: now, count: 1, flushedCount: 1, lastFlushAt: now, created });
    const max = this.opts.maxTracked ?? 4096;
    while (this.seen.size > max) this.seen.delete(this.seen.keys().next().value as string);
  }

  private async create(namespace: string, name: string, s: EventSubject, type: EventType, reason: string, action: string, note: string, now: number): Promise<boolean> {
    const body = {
      apiVersion: "events.k8s.io/v1",
      kind: "Event",
      metadata: { name, namespace },
      eventTime: microTime(now),
      reportingController: this.opts.controller,
      reportingInstance: this.opts.instance.slice(0, 128),
      action,
      reason,
      type,
      note: note.slice(0, 1024),
      regarding: { apiVersion: s.apiVersion, kind: s.kind, name: s.name, ...(s.uid ? { uid: s.uid } : {}), ...(s.namespace ? { namespace: s.namespace } : {}) },
    };
    try {
      await this.opts.events.create(namespace, body, this.opts.controller.replace(/\//g, "-"));
      return true;
    } catch (e) {
      this.log.warn({ err: asError(e), reason }, "Cannot record Event");
      return false;
    }
  }

  private async flushSeries(agg: Aggregate, now: number): Promise<void> {
    agg.lastFlushAt = now;
    if (!(await agg.created) || agg.count === agg.flushedCount) return;
    const count = agg.count;
    try {
      await this.opts.events.mergePatch(agg.namespace, agg.eventName, { series: { count, lastObservedTime: microTime(now) } }, this.opts.controller.replace(/\//g, "-"));
      agg.flushedCount = count;
    } catch (e) {
      this.log.debug({ err: asError(e) }, "Cannot update Event series");
    }
  }
}
