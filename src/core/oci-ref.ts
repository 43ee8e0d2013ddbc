/**
 * OCI image references (`host[:port]/repo[:tag][@sha256:hex]`) and the transport rules for a registry host.
 * Pure: the edge (image/oci-fetch.ts) does the requests.
 */

/** A parsed image reference. */
export interface ImageReference {
  /** The registry as written (`registry.local:5000`, `[::1]:5000`), or `docker.io` when the name had none. */
  registry: string;
  /** The host:port that serves the registry API (`registry-1.docker.io` for `docker.io`). */
  apiHost: string;
  /** The repository path, e.g. `os/debian` (`library/debian` for a Docker Hub official image). */
  repository: string;
  /** The tag, when the reference names one; `latest` when it names neither tag nor digest. */
  tag?: string;
  /** `sha256:<64 hex>` when the reference pins a digest. */
  digest?: string;
}

/** Where a manifest is fetched from: the pinned digest when there is one, else the tag. */
export function manifestReferenceOf(ref: ImageReference): string {
  return ref.digest ?? ref.tag ?? "latest";
}

/** The reference in its canonical written form, for logs and messages. */
export function formatImageReference(ref: ImageReference): string {
  const tag = ref.tag !== undefined ? `:${ref.tag}` : "";
  const digest = ref.digest !== undefined ? `@${ref.digest}` : "";
  return `${ref.registry}/${ref.repository}${tag}${digest}`;
}

const DockerHub = "docker.io";
const DockerHubApiHost = "registry-1.docker.io";

// From the distribution reference grammar: lowercase path components joined by `.`, `_`, `__` or dashes.
const pathComponent = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const tagPattern = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const hostnamePattern = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$/;
const ipv6Pattern = /^\[[0-9A-Fa-f:.]+\]$/;
/** The only digest algorithm we accept, in references and in descriptors. */
export const DigestPattern = /^sha256:[0-9a-f]{64}$/;

/**
 * Parses an image reference. Names without a registry (`debian:12`, `user/app`) mean Docker Hub.
 * @throws RangeError when the reference is malformed, names an unsupported digest algorithm or is too long
 */
export function parseImageReference(input: string): ImageReference {
  const fail = (why: string): never => {
    throw new RangeError(`Cannot parse image reference "${input}": ${why}`);
  };
  if (input.length === 0 || input.length > 1024) fail("length must be 1 to 1024 characters");
  if (/\s/.test(input)) fail("it contains whitespace");
  let rest = input;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DigestPattern.test(digest)) fail(`digest "${digest}" is not sha256:<64 lowercase hex>`);
  }
  let tag: string | undefined;
  const lastColon = rest.lastIndexOf(":");
  if (lastColon > rest.lastIndexOf("/") && lastColon > rest.lastIndexOf("]")) {
    tag = rest.slice(lastColon + 1);
    rest = rest.slice(0, lastColon);
    if (!tagPattern.test(tag)) fail(`tag "${tag}" is not valid`);
  }
  const slash = rest.indexOf("/");
  const first = slash >= 0 ? rest.slice(0, slash) : "";
  const hasHost = slash >= 0 && (first.includes(".") || first.includes(":") || first.includes("[") || first === "localhost");
  let registry = DockerHub;
  let repository = rest;
  if (hasHost) {
    registry = first;
    repository = rest.slice(slash + 1);
    if (!isValidHostPort(registry)) fail(`registry host "${registry}" is not valid`);
  } else if (!repository.includes("/")) {
    repository = `library/${repository}`;
  }
  if (repository.length === 0 || repository.length > 255) fail("the repository must be 1 to 255 characters");
  for (const part of repository.split("/")) {
    if (!pathComponent.test(part)) fail(`repository component "${part}" is not lowercase letters, digits and separators`);
  }
  if (tag === undefined && digest === undefined) tag = "latest";
  const apiHost = registry === DockerHub || registry === "index.docker.io" ? DockerHubApiHost : registry;
  return { registry, apiHost, repository, ...(tag !== undefined ? { tag } : {}), ...(digest !== undefined ? { digest } : {}) };
}

function isValidHostPort(hostPort: string): boolean {
  const m = /^(.*?)(?::(\d{1,5}))?$/.exec(hostPort);
  if (!m) return false;
  const host = m[1] ?? "";
  const port = m[2];
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) return false;
  return hostnamePattern.test(host) || ipv6Pattern.test(host);
}

/** The host of a `host[:port]` string, without the port (IPv6 keeps its brackets). */
export function hostWithoutPort(hostPort: string): string {
  if (hostPort.startsWith("[")) return hostPort.slice(0, hostPort.indexOf("]") + 1);
  const colon = hostPort.lastIndexOf(":");
  return colon >= 0 ? hostPort.slice(0, colon) : hostPort;
}

/** True for names and addresses that cannot leave this machine: localhost, 127.0.0.0/8 and ::1. */
export function isLoopbackHost(hostPort: string): boolean {
  const host = hostWithoutPort(hostPort).toLowerCase();
  if (host === "localhost" || host.endsWith(".localhost")) return true;
  if (host === "[::1]") return true;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** Splits a comma-separated list (BASECACHE_INSECURE_REGISTRIES), dropping blanks. */
export function parseRegistryList(value: string | undefined): string[] {
  return (value ?? "")
    .split(",")
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s.length > 0);
}

/**
 * The scheme to talk to a registry with: plain http for loopback hosts and hosts listed as insecure (a listed
 * `host` matches every port, a listed `host:port` only that port), https otherwise.
 */
export function decideRegistryScheme(apiHost: string, insecure: readonly string[]): "http" | "https" {
  if (isLoopbackHost(apiHost)) return "http";
  const hostPort = apiHost.toLowerCase();
  const host = hostWithoutPort(hostPort);
  return insecure.some((entry) => entry === hostPort || entry === host) ? "http" : "https";
}
