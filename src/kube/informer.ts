/**
 * A list-watch cache of one resource, on client-node's Watch. Unlike client-node's own informer (which stops
 * after most errors, see its cache.ts), this one restarts with capped backoff after any failure, relists when
 * the server says the resourceVersion expired, and relists periodically so that a missed event cannot leave
 * the cache wrong for long. Handlers get add/update/delete with the previous object.
 */
import { Watch, type KubeConfig } from "@kubernetes/client-node";
import { backoffDelay, type BackoffPolicy } from "../core/backoff.js";
import { asError } from "../lib/errors.js";
import { monotonicClock, sleep, type Clock } from "../lib/clock.js";
import { silentLogger, type Logger } from "../lib/log.js";
import { toKubeApiError, type ListOptions, type ListResult, type RawObject } from "./client.js";

export type InformerEvent = "add" | "update" | "delete";
export type InformerHandler<T> = (obj: T, old: T | undefined) => void;

export interface InformerOptions<T extends RawObject> {
  /** For logs and metrics, e.g. "nodes". */
  name: string;
  kc: KubeConfig;
  /** The collection path the watch uses, e.g. `/api/v1/nodes`. */
  path: string;
  list: (opts: ListOptions) => Promise<ListResult<T>>;
  labelSelector?: string;
  fieldSelector?: string;
  /** Relist at least this often (with ±10% jitter); default 10 minutes. */
  relistIntervalMs?: number;
  /** Server-side watch timeout; default 5 minutes, with jitter. */
  watchTimeoutSeconds?: number;
  backoff?: BackoffPolicy;
  log?: Logger;
  /** Called after each failed list or watch, for metrics. */
  onError?: (err: Error) => void;
  /** Measures relist intervals and watch lifetimes; default the process's monotonic clock. */
  clock?: Clock;
}

/** The object's cache key: `namespace/name`, or `name` for cluster-scoped objects. */
export function objectKey(obj: RawObject): string {
  const ns = obj.metadata?.namespace;
  return ns ? `${ns}/${obj.metadata?.name ?? ""}` : (obj.metadata?.name ?? "");
}

class ResourceExpired extends Error {}

/** A watch that ends sooner than this, twice in a row, is followed by a backoff. */
const QuickWatchMs = 1_000;

export class Informer<T extends RawObject> {
  private readonly store = new Map<string, T>();
  private readonly handlers: Record<InformerEvent, InformerHandler<T>[]> = { add: [], update: [], delete: [] };
  private resourceVersion = "";
  private synced = false;
  private readonly syncWaiters: (() => void)[] = [];
  private readonly log: Logger;
  private running: Promise<void> | undefined;

  constructor(private readonly opts: InformerOptions<T>) {
    this.log = (opts.log ?? silentLogger).child({ informer: opts.name });
  }

  on(event: InformerEvent, handler: InformerHandler<T>): void {
    this.handlers[event].push(handler);
  }

  get(key: string): T | undefined {
    return this.store.get(key);
  }

  list(): T[] {
    return [...this.store.values()];
  }

  get size(): number {
    return this.store.size;
  }

  get hasSynced(): boolean {
    return this.synced;
  }

  /** Resolves once the first list has filled the cache. */
  waitForSync(signal?: AbortSignal): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.syncWaiters.push(resolve);
      signal?.addEventListener("abort", () => reject(signal.reason), { once: true });
    });
  }

  /** Starts listing and watching until `signal` aborts; `stopped()` resolves after that. */
  start(signal: AbortSignal): void {
    this.running ??= this.run(signal);
  }

  async stopped(): Promise<void> {
    await this.running;
  }

  private emit(event: InformerEvent, obj: T, old: T | undefined): void {
    for (const h of this.handlers[event]) {
      try {
        h(obj, old);
      } catch (err) {
        this.log.error({ err: asError(err) }, "Informer handler failed");
      }
    }
  }

  private upsert(obj: T): void {
    const key = objectKey(obj);
    const old = this.store.get(key);
    this.store.set(key, obj);
    if (!old) this.emit("add", obj, undefined);
    else if (old.metadata?.resourceVersion !== obj.metadata?.resourceVersion) this.emit("update", obj, old);
  }

  private remove(obj: T): void {
    const key = objectKey(obj);
    const old = this.store.get(key);
    if (!old) return;
    this.store.delete(key);
    this.emit("delete", old, old);
  }

  private async relist(): Promise<void> {
    const { items, resourceVersion } = await this.opts.list({ labelSelector: this.opts.labelSelector, fieldSelector: this.opts.fieldSelector });
    const seen = new Set<string>();
    for (const item of items) {
      seen.add(objectKey(item));
      this.upsert(item);
    }
    for (const [key, obj] of [...this.store]) if (!seen.has(key)) this.remove(obj);
    this.resourceVersion = resourceVersion;
    if (!this.synced) {
      this.synced = true;
      this.log.debug({ objects: this.store.size }, "Informer synced");
      for (const w of this.syncWaiters.splice(0)) w();
    }
  }

  private async run(signal: AbortSignal): Promise<void> {
    const policy = this.opts.backoff ?? { baseMs: 500, maxMs: 30_000 };
    const relistMs = this.opts.relistIntervalMs ?? 600_000;
    const clock = this.opts.clock ?? monotonicClock;
    let attempt = 0;
    while (!signal.aborted) {
      try {
        await this.relist();
        attempt = 0;
        const relistAt = clock.now() + relistMs * (0.9 + 0.2 * Math.random());
        let quickEnds = 0;
        while (!signal.aborted && clock.now() < relistAt) {
          const began = clock.now();
          await this.watchOnce(signal, relistAt - clock.now());
          // NOTE: a server that ends every watch at once, without an error, would otherwise be asked again in a
          // tight loop; back off as after a failure until a watch lasts.
          quickEnds = clock.now() - began < QuickWatchMs ? quickEnds + 1 : 0;
          if (quickEnds > 1) await sleep(backoffDelay(policy, quickEnds - 2, Math.random()), signal).catch(() => undefined);
        }
      } catch (e) {
        if (signal.aborted) break;
        if (e instanceof ResourceExpired) {
          this.log.debug("Watch resourceVersion expired, relisting");
          continue;
        }
        const err = asError(e);
        this.opts.onError?.(err);
        const delay = backoffDelay(policy, attempt++, Math.random());
        this.log.warn({ err, delayMs: delay }, "Informer list or watch failed, restarting");
        await sleep(delay, signal).catch(() => undefined);
      }
    }
  }

  /** One watch request from the current resourceVersion; resolves when the server ends it, throws on failure. */
  private watchOnce(signal: AbortSignal, maxMs: number): Promise<void> {
    const timeoutSeconds = Math.max(1, Math.min(Math.ceil(maxMs / 1000), Math.round((this.opts.watchTimeoutSeconds ?? 300) * (0.8 + 0.4 * Math.random()))));
    const query: Record<string, string | number | boolean> = { resourceVersion: this.resourceVersion, allowWatchBookmarks: true, timeoutSeconds };
    if (this.opts.labelSelector) query.labelSelector = this.opts.labelSelector;
    if (this.opts.fieldSelector) query.fieldSelector = this.opts.fieldSelector;
    return new Promise((resolve, reject) => {
      let expired = false;
      let controller: AbortController | undefined;
      const onAbort = () => controller?.abort();
      signal.addEventListener("abort", onAbort, { once: true });
      const done = (err: unknown) => {
        signal.removeEventListener("abort", onAbort);
        const status = (err as { statusCode?: number } | null)?.statusCode;
        if (expired || status === 410) reject(new ResourceExpired());
        // A KubeApiError, so that a refusal such as a 429 logs as one line with its status, not a stack.
        else if (err && !signal.aborted) reject(toKubeApiError(err, `Cannot watch ${this.opts.name}`));
        else resolve();
      };
      const onEvent = (type: string, obj: unknown) => {
        const o = obj as T & { code?: number };
        if (type === "ERROR") {
          if (o.code === 410) expired = true;
          else this.log.warn({ status: o.code }, "Watch reported an error");
          return;
        }
        if (type === "ADDED" || type === "MODIFIED") this.upsert(o);
        else if (type === "DELETED") this.remove(o);
        const rv = o.metadata?.resourceVersion;
        if (rv) this.resourceVersion = rv;
      };
      new Watch(this.opts.kc)
        .watch(this.opts.path, query, onEvent, done)
        .then((c) => {
          controller = c;
          if (signal.aborted) c.abort();
        })
        .catch(done);
    });
  }
}
