/**
 * Kubernetes access for the controller and the agent: kubeconfig loading, one error type for API failures
 * (never a raw ApiException, whose message embeds the whole response body), and typed access to
 * cluster-scoped custom objects and to any group's raw JSON objects.
 */
import { existsSync } from "node:fs";
import type { AgentOptions } from "node:https";
import { CoreV1Api, CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { BasecacheError, ConfigError } from "../lib/errors.js";
import { Group, ImageCachePlural, NodeImageCachePlural, Version } from "./api-types.js";

/** A failed API request: HTTP status, the API's reason (`NotFound`, `Conflict`, ...) and its short message. */
export class KubeApiError extends BasecacheError {
  readonly code = "KUBE_API";
  constructor(
    message: string,
    readonly status: number,
    readonly reason: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

interface StatusBody {
  reason?: string;
  message?: string;
}

function statusBody(body: unknown): StatusBody {
  if (typeof body === "string") {
    try {
      return JSON.parse(body) as StatusBody;
    } catch {
      return { message: body };
    }
  }
  return typeof body === "object" && body !== null ? (body as StatusBody) : {};
}

/**
 * Turns whatever a client call threw into a KubeApiError that states `action`, with the HTTP status and
 * at most 300 characters of the API's message.
 */
export function toKubeApiError(err: unknown, action: string): KubeApiError {
  if (err instanceof KubeApiError) return err;
  const e = err as { code?: unknown; statusCode?: unknown; body?: unknown; message?: unknown } | null;
  const status = typeof e?.code === "number" ? e.code : typeof e?.statusCode === "number" ? e.statusCode : 0;
  if (status === 0) {
    const detail = e && typeof e.message === "string" ? e.message.split("\n")[0]!.slice(0, 300) : String(err);
    return new KubeApiError(`${action}: ${detail}`, 0, "ConnectionFailed", { cause: err });
  }
  const body = statusBody(e?.body);
  const reason = body.reason ?? "Unknown";
  const message = (body.message ?? "").slice(0, 300);
  // NOTE: not `{ cause: err }`: pino's error serializer appends every cause's message, and an ApiException's
  // message is the whole response body and headers. The original stays reachable, unlogged, as `raw`.
  const wrapped = new KubeApiError(`${action}: HTTP ${status} ${reason}${message ? `: ${message}` : ""}`, status, reason);
  Object.defineProperty(wrapped, "raw", { value: err, enumerable: false });
  return wrapped;
}

export function isNotFound(err: unknown): boolean {
  return err instanceof KubeApiError && err.status === 404;
}
export function isConflict(err: unknown): boolean {
  return err instanceof KubeApiError && err.status === 409;
}
/** 409 AlreadyExists on create (as opposed to a 409 Conflict on a stale resourceVersion). */
export function isAlreadyExists(err: unknown): boolean {
  return err instanceof KubeApiError && err.status === 409 && err.reason === "AlreadyExists";
}

/** Runs one API call and rethrows any failure as a KubeApiError stating `action`. */
export async function call<T>(action: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw toKubeApiError(err, action);
  }
}

/**
 * Loads a kubeconfig as kubectl finds one: `path` if given, else $KUBECONFIG, else ~/.kube/config, else the
 * in-cluster service account.
 * @throws ConfigError when the file is missing or unreadable or names no cluster
 */
export function loadKubeConfig(path?: string): KubeConfig {
  const kc = new KubeConfig();
  try {
    if (path) {
      if (!existsSync(path)) throw new Error(`no file at "${path}"`);
      kc.loadFromFile(path);
    } else {
      kc.loadFromDefault();
    }
  } catch (err) {
    throw new ConfigError(`Cannot load kubeconfig${path ? ` "${path}"` : ""}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster?.server) throw new ConfigError(`Cannot load kubeconfig${path ? ` "${path}"` : ""}: no current cluster with a server`);
  return enableKeepAlive(kc);
}

export const mergePatchOptions = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);

const keepAlivePatched = new WeakSet<KubeConfig>();

/**
 * Makes every client of `kc` share one keep-alive HTTPS agent. NOTE: client-node 1.4 builds a new agent for
 * every request (KubeConfig.createAgent), so each call pays a fresh TLS handshake and client authentication;
 * measured on the test control plane that made a status write 5-10x slower. Idempotent.
 */
export function enableKeepAlive(kc: KubeConfig, maxSockets = 64): KubeConfig {
  if (keepAlivePatched.has(kc)) return kc;
  keepAlivePatched.add(kc);
  const target = kc as unknown as { createAgent: (cluster: unknown, opts: AgentOptions) => unknown };
  const original = target.createAgent.bind(kc);
  const agents = new Map<string, unknown>();
  target.createAgent = (cluster, opts) => {
    // One agent per distinct TLS identity (a kubeconfig switched to another user or cluster gets its own).
    const key = JSON.stringify([(cluster as { server?: string } | null)?.server, String(opts.cert ?? ""), String(opts.ca ?? ""), opts.rejectUnauthorized]);
    let agent = agents.get(key);
    if (!agent) {
      agent = original(cluster, { ...opts, keepAlive: true, maxSockets });
      agents.set(key, agent);
    }
    return agent;
  };
  return kc;
}

/** The object fields every resource has, for code that handles any of them. */
export interface RawObject {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; uid?: string; resourceVersion?: string; generation?: number; [k: string]: unknown };
  [k: string]: unknown;
}

export interface ListResult<T> {
  items: T[];
  resourceVersion: string;
}

export interface ListOptions {
  labelSelector?: string;
  fieldSelector?: string;
}

/** Raw JSON access to one cluster-scoped resource of any API group but the core one (`/apis/<group>/<version>/<plural>`). */
export class ClusterResource<T extends RawObject = RawObject> {
  constructor(
    private readonly api: CustomObjectsApi,
    readonly group: string,
    readonly version: string,
    readonly plural: string,
    readonly kind: string,
  ) {}

  /** The collection's path, for watches. */
  get path(): string {
    return `/apis/${this.group}/${this.version}/${this.plural}`;
  }

  async list(opts: ListOptions = {}): Promise<ListResult<T>> {
    const r = (await call(`Cannot list ${this.plural}`, () => this.api.listClusterCustomObject({ group: this.group, version: this.version, plural: this.plural, ...opts }))) as {
      items?: T[];
      metadata?: { resourceVersion?: string };
    };
    return { items: r.items ?? [], resourceVersion: r.metadata?.resourceVersion ?? "" };
  }

  async get(name: string): Promise<T> {
    return (await call(`Cannot get ${this.kind} "${name}"`, () => this.api.getClusterCustomObject({ group: this.group, version: this.version, plural: this.plural, name }))) as T;
  }

  async create(body: T, fieldManager: string): Promise<T> {
    const name = body.metadata?.name ?? "";
    return (await call(`Cannot create ${this.kind} "${name}"`, () => this.api.createClusterCustomObject({ group: this.group, version: this.version, plural: this.plural, body, fieldManager }))) as T;
  }

  /** JSON merge patch (RFC 7386) of the object. */
  async mergePatch(name: string, patch: object, fieldManager: string): Promise<T> {
    return (await call(`Cannot patch ${this.kind} "${name}"`, () =>
      this.api.patchClusterCustomObject({ group: this.group, version: this.version, plural: this.plural, name, body: patch, fieldManager }, mergePatchOptions),
    )) as T;
  }

  /** JSON merge patch of the status subresource. */
  async mergePatchStatus(name: string, patch: object, fieldManager: string): Promise<T> {
    return (await call(`Cannot patch status of ${this.kind} "${name}"`, () =>
      this.api.patchClusterCustomObjectStatus({ group: this.group, version: this.version, plural: this.plural, name, body: patch, fieldManager }, mergePatchOptions),
    )) as T;
  }

  /** Replaces the whole status (JSON patch `add /status`), so fields left out are removed. */
  async replaceStatus(name: string, status: object, fieldManager: string): Promise<T> {
    return (await call(`Cannot write status of ${this.kind} "${name}"`, () =>
      this.api.patchClusterCustomObjectStatus({ group: this.group, version: this.version, plural: this.plural, name, body: [{ op: "add", path: "/status", value: status }], fieldManager }),
    )) as T;
  }

  /** Deletes the object; with `uid`, only that incarnation of it (a precondition the server checks). */
  async delete(name: string, uid?: string): Promise<void> {
    await call(`Cannot delete ${this.kind} "${name}"`, () =>
      this.api.deleteClusterCustomObject({ group: this.group, version: this.version, plural: this.plural, name, ...(uid ? { body: { preconditions: { uid } } } : {}) }),
    );
  }
}

/** Raw JSON access to one namespaced resource of any API group but the core one. */
export class NamespacedResource<T extends RawObject = RawObject> {
  constructor(
    private readonly api: CustomObjectsApi,
    readonly group: string,
    readonly version: string,
    readonly plural: string,
    readonly kind: string,
  ) {}

  async get(namespace: string, name: string): Promise<T> {
    return (await call(`Cannot get ${this.kind} "${namespace}/${name}"`, () => this.api.getNamespacedCustomObject({ group: this.group, version: this.version, plural: this.plural, namespace, name }))) as T;
  }

  async create(namespace: string, body: T, fieldManager: string): Promise<T> {
    const name = body.metadata?.name ?? "";
    return (await call(`Cannot create ${this.kind} "${namespace}/${name}"`, () =>
      this.api.createNamespacedCustomObject({ group: this.group, version: this.version, plural: this.plural, namespace, body, fieldManager }),
    )) as T;
  }

  /** Replaces the object; the server refuses with 409 when its resourceVersion is stale. */
  async replace(namespace: string, body: T, fieldManager: string): Promise<T> {
    const name = body.metadata?.name ?? "";
    return (await call(`Cannot update ${this.kind} "${namespace}/${name}"`, () =>
      this.api.replaceNamespacedCustomObject({ group: this.group, version: this.version, plural: this.plural, namespace, name, body, fieldManager }),
    )) as T;
  }

  async mergePatch(namespace: string, name: string, patch: object, fieldManager: string): Promise<T> {
    return (await call(`Cannot patch ${this.kind} "${namespace}/${name}"`, () =>
      this.api.patchNamespacedCustomObject({ group: this.group, version: this.version, plural: this.plural, namespace, name, body: patch, fieldManager }, mergePatchOptions),
    )) as T;
  }
}

/** The API clients one process needs, made once from its kubeconfig. */
export interface KubeClients {
  kc: KubeConfig;
  core: CoreV1Api;
  custom: CustomObjectsApi;
  imageCaches: ClusterResource;
  nodeImageCaches: ClusterResource;
  leases: NamespacedResource;
  events: NamespacedResource;
}

export function makeClients(kc: KubeConfig): KubeClients {
  enableKeepAlive(kc);
  const custom = kc.makeApiClient(CustomObjectsApi);
  return {
    kc,
    core: kc.makeApiClient(CoreV1Api),
    custom,
    imageCaches: new ClusterResource(custom, Group, Version, ImageCachePlural, "ImageCache"),
    nodeImageCaches: new ClusterResource(custom, Group, Version, NodeImageCachePlural, "NodeImageCache"),
    // NOTE: raw JSON through CustomObjectsApi rather than the typed clients: client-node's typed models turn
    // MicroTime fields into Dates and back, and drop fields they do not know.
    leases: new NamespacedResource(custom, "coordination.k8s.io", "v1", "leases", "Lease"),
    events: new NamespacedResource(custom, "events.k8s.io", "v1", "events", "Event"),
  };
}
