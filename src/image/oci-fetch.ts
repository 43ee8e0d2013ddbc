/**
 * The OCI registry source: resolves `host/repo:tag[@digest]` to the one blob that holds the disk (an artifact
 * layer, or a KubeVirt containerDisk tar layer). Streaming the disk out of a tar layer is tar-layer.ts.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { basicAuthorization, findDockerConfigCredentials, parseAuthChallenge, planTokenRequest, parseTokenResponse, type BasicCredentials } from "../core/oci-auth.js";
import {
  ManifestAccept,
  MaxManifestBytes,
  chooseDiskLayer,
  choosePlatformManifest,
  parseManifestDocument,
  type Decision,
  type Descriptor,
  type ManifestDocument,
  type Platform,
} from "../core/oci-manifest.js";
import { decideRegistryScheme, formatImageReference, manifestReferenceOf, parseImageReference, parseRegistryList, type ImageReference } from "../core/oci-ref.js";
import { redactUrlsIn } from "../core/redact.js";
import { ConfigError, FetchError, ImageRejectedError } from "../lib/errors.js";
import { verifyCosign, type CosignProvenance, type RegistryVerifyRequest, type SignatureStore } from "./cosign-verify.js";
import type { ResolvedSource } from "./source.js";

export interface ResolveRegistryOptions {
  signal?: AbortSignal;
  /** Registries (`host` or `host:port`) spoken to over plain http; BASECACHE_INSECURE_REGISTRIES adds more. */
  insecureRegistries?: string[];
  /** The platform to pick from an index; default linux/amd64. */
  platform?: Platform;
  /** Deadline for each registry request (manifest, token, blob check); default 30 s. */
  requestTimeoutMs?: number;
  /** Verify the image's cosign signature with these keys before anything of the disk is downloaded. */
  verify?: RegistryVerifyRequest;
}

const DefaultPlatform: Platform = { os: "linux", architecture: "amd64" };

/**
 * Resolves an image reference to the HTTP(S) location of its disk blob.
 * With `verify`, the manifest (or index) the reference names must carry a cosign signature by one of the keys,
 * checked before the index is followed or a layer touched.
 * @throws ConfigError for a malformed reference; FetchError when the registry fails or refuses; ImageRejectedError
 *   for a manifest that holds no single disk, does not match its pinned digest, or is not signed as `verify` asks
 */
export async function resolveRegistryImage(ref: string, opts: ResolveRegistryOptions = {}): Promise<ResolvedSource> {
  const { parsed, client } = clientFor(ref, opts);
  const name = formatImageReference(parsed);
  const top = await client.getManifest(manifestReferenceOf(parsed), parsed.digest);
  const signature = opts.verify ? await verifyCosign(name, top.digest, opts.verify, client) : undefined;
  let image = top.doc;
  if (image.kind === "index") {
    const entry = decided(choosePlatformManifest(image.manifests, opts.platform ?? DefaultPlatform), name);
    image = (await client.getManifest(entry.digest, entry.digest)).doc;
    if (image.kind !== "image") throw new ImageRejectedError("unsupported-format", `Cannot use image "${name}": its index points to another index`);
  }
  const choice = decided(chooseDiskLayer(image.layers), name);
  await client.checkBlob(choice.layer);
  return {
    url: client.blobUrl(choice.layer.digest),
    ...(client.authorization !== undefined ? { headers: { authorization: client.authorization } } : {}),
    expectedDigest: choice.layer.digest,
    unpack: choice.unpack,
    description: `${name} (layer ${choice.layer.digest.slice(0, 19)}…, ${choice.why})`,
    ...(signature ? { signature } : {}),
  };
}

// A malformed reference is the user's error (ConfigError); the scheme follows the insecure-registries list.
function clientFor(ref: string, opts: ResolveRegistryOptions): { parsed: ImageReference; client: RegistryClient } {
  let parsed: ImageReference;
  try {
    parsed = parseImageReference(ref);
  } catch (err) {
    throw new ConfigError((err as Error).message, { cause: err });
  }
  const insecure = [...parseRegistryList((opts.insecureRegistries ?? []).join(",")), ...parseRegistryList(process.env.BASECACHE_INSECURE_REGISTRIES)];
  return { parsed, client: new RegistryClient(parsed, decideRegistryScheme(parsed.apiHost, insecure), opts) };
}

/**
 * The digest of the manifest (or index) a tag names now, computed from the bytes the registry served: what an
 * updatePolicy tracks. A reference already pinned to a digest gives that digest, checked. With `verify`, a digest
 * no supplied key signed is refused: an unsigned push under the tag never becomes a version.
 * @throws ConfigError for a malformed reference; FetchError when the registry fails or refuses; ImageRejectedError
 *   when `verify` refuses the digest's signature
 */
export async function resolveManifestDigest(ref: string, opts: ResolveRegistryOptions = {}): Promise<{ digest: string; signature?: CosignProvenance }> {
  const { parsed, client } = clientFor(ref, opts);
  const digest = await client.manifestDigest(manifestReferenceOf(parsed), parsed.digest);
  if (!opts.verify) return { digest };
  return { digest, signature: await verifyCosign(formatImageReference(parsed), digest, opts.verify, client) };
}

function decided<T>(d: Decision<T>, name: string): T {
  if (d.ok) return d.value;
  throw new ImageRejectedError(d.reason, `Cannot use image "${name}": ${d.message}`);
}

/** One repository on one registry, with the authorization it has earned so far. */
class RegistryClient implements SignatureStore {
  authorization: string | undefined;
  private readonly base: string;
  private readonly name: string;
  private triedAuth = false;

  constructor(
    private readonly ref: ImageReference,
    private readonly scheme: "http" | "https",
    private readonly opts: ResolveRegistryOptions,
  ) {
    this.base = `${scheme}://${ref.apiHost}/v2/${ref.repository}`;
    this.name = formatImageReference(ref);
  }

  blobUrl(digest: string): string {
    return `${this.base}/blobs/${digest}`;
  }

  /** GETs a manifest and the digest of its bytes; verifies it against `digest` when one is pinned or it was named by digest. */
  async getManifest(reference: string, digest: string | undefined): Promise<{ doc: ManifestDocument; digest: string }> {
    const m = await this.manifestBytes(reference, digest);
    return { doc: decided(parseManifestDocument(m.body.toString("utf8"), m.contentType), this.name), digest: m.digest };
  }

  /** The manifest under `tag`, or undefined when the registry has none: how a missing signature shows. */
  async manifestAt(tag: string): Promise<ManifestDocument | undefined> {
    const res = await this.request(`${this.base}/manifests/${tag}`, "GET", { accept: ManifestAccept }, `manifest "${tag}"`, [404]);
    if (res.status === 404) {
      await res.body?.cancel();
      return undefined;
    }
    const body = await readLimited(res, MaxManifestBytes, this.name);
    return decided(parseManifestDocument(body.toString("utf8"), res.headers.get("content-type") ?? undefined), this.name);
  }

  /** A small blob (a signature payload), at most `limit` bytes, checked against its digest. */
  async blob(digest: string, limit: number): Promise<Buffer> {
    const res = await this.request(this.blobUrl(digest), "GET", {}, `blob ${digest}`);
    // More bytes than the descriptor says is the same finding as other bytes: the blob is not the one named.
    const body = await readLimited(res, limit, this.name, () => new ImageRejectedError("corrupt", `Cannot use image "${this.name}": blob ${digest} is larger than the ${limit} bytes its descriptor says`));
    const actual = sha256Digest(body);
    if (actual !== digest) throw new ImageRejectedError("corrupt", `Cannot use image "${this.name}": blob ${digest} has digest ${actual}`);
    return body;
  }

  /** The sha256 of the manifest bytes at `reference`, checked against `digest` when one is pinned. */
  async manifestDigest(reference: string, digest: string | undefined): Promise<string> {
    return (await this.manifestBytes(reference, digest)).digest;
  }

  // One manifest GET, bounded, with the digest of the bytes served, which must be `digest` when one is given.
  private async manifestBytes(reference: string, digest: string | undefined): Promise<{ body: Buffer; contentType: string | undefined; digest: string }> {
    const res = await this.request(`${this.base}/manifests/${reference}`, "GET", { accept: ManifestAccept }, `manifest "${reference}"`);
    const body = await readLimited(res, MaxManifestBytes, this.name);
    const actual = sha256Digest(body);
    if (digest !== undefined && actual !== digest) throw new ImageRejectedError("checksum-mismatch", `Cannot use image "${this.name}": manifest digest is ${actual}, expected ${digest}`);
    return { body, contentType: res.headers.get("content-type") ?? undefined, digest: actual };
  }

  /** HEADs the disk blob so that a missing layer fails here, with its name, rather than mid-pipeline. */
  async checkBlob(layer: Descriptor): Promise<void> {
    const res = await this.request(this.blobUrl(layer.digest), "HEAD", {}, `layer ${layer.digest}`);
    const length = res.headers.get("content-length");
    if (res.status === 200 && length !== null && Number(length) !== layer.size) {
      throw new ImageRejectedError("corrupt", `Cannot use image "${this.name}": layer ${layer.digest} is ${length} bytes in the registry, the manifest says ${layer.size}`);
    }
  }

  /** A request with authentication; a status outside 2xx (and not in `allowed`) is a FetchError naming `what`. */
  private async request(url: string, method: string, headers: Record<string, string>, what: string, allowed: readonly number[] = []): Promise<Response> {
    let res = await this.send(url, method, headers);
    if (res.status === 401 && !this.triedAuth) {
      this.triedAuth = true;
      await res.body?.cancel();
      await this.authenticate(res.headers.get("www-authenticate"));
      res = await this.send(url, method, headers);
    }
    const redirected = method === "HEAD" && res.status >= 300 && res.status < 400;
    if (!res.ok && !redirected && !allowed.includes(res.status)) {
      await res.body?.cancel();
      const retryable = res.status === 408 || res.status === 429 || res.status >= 500;
      const hint = res.status === 404 ? "not found" : res.status === 401 || res.status === 403 ? "access denied" : `status ${res.status}`;
      throw new FetchError("http-status", `Cannot fetch ${what} of image "${this.name}": registry answered ${res.status} (${hint})`, { status: res.status, retryable });
    }
    return res;
  }

  private async send(url: string, method: string, headers: Record<string, string>): Promise<Response> {
    const h: Record<string, string> = { ...headers };
    if (this.authorization !== undefined) h.authorization = this.authorization;
    return guarded(() => fetch(url, { method, headers: h, redirect: method === "HEAD" ? "manual" : "follow", signal: this.signal() }), this.name, this.opts.signal);
  }

  private signal(): AbortSignal {
    const timeout = AbortSignal.timeout(this.opts.requestTimeoutMs ?? 30_000);
    return this.opts.signal ? AbortSignal.any([this.opts.signal, timeout]) : timeout;
  }

  private async authenticate(header: string | null): Promise<void> {
    const challenge = parseAuthChallenge(header);
    const creds = await readRegistryCredentials(this.ref.registry);
    if (challenge?.scheme === "basic") {
      if (!creds) throw registryError(`Cannot fetch image "${this.name}": the registry asks for credentials and none are configured for "${this.ref.registry}"`, false);
      this.authorization = basicAuthorization(creds);
      return;
    }
    if (challenge?.scheme !== "bearer") throw registryError(`Cannot fetch image "${this.name}": the registry asks for an unsupported authentication ${JSON.stringify(header ?? "")}`, false);
    this.authorization = `Bearer ${await this.fetchToken(challenge, creds)}`;
  }

  private async fetchToken(challenge: NonNullable<ReturnType<typeof parseAuthChallenge>>, creds: BasicCredentials | undefined): Promise<string> {
    const plan = planTokenRequest(challenge, this.ref.repository, this.scheme);
    if (!plan.ok) throw registryError(`Cannot get a registry token for image "${this.name}": ${plan.message}`, false);
    const headers: Record<string, string> = creds ? { authorization: basicAuthorization(creds) } : {};
    const res = await guarded(() => fetch(plan.url, { headers, signal: this.signal() }), this.name, this.opts.signal);
    if (!res.ok) {
      await res.body?.cancel();
      const retryable = res.status === 429 || res.status >= 500;
      throw new FetchError("http-status", `Cannot get a registry token for image "${this.name}": token server answered ${res.status}`, { status: res.status, retryable });
    }
    const token = parseTokenResponse((await readLimited(res, 1024 * 1024, this.name)).toString("utf8"));
    if (token === undefined) throw registryError(`Cannot get a registry token for image "${this.name}": the token server's answer holds no token`, false);
    return token;
  }
}

function sha256Digest(bytes: Buffer): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

function registryError(message: string, retryable: boolean, cause?: unknown): FetchError {
  return new FetchError("registry", message, { retryable }, cause === undefined ? undefined : { cause });
}

/** Runs a fetch, turning network errors and timeouts into FetchError; the caller's own abort passes through. */
async function guarded<T>(fn: () => Promise<T>, name: string, callerSignal: AbortSignal | undefined): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (callerSignal?.aborted) throw callerSignal.reason;
    if (err instanceof FetchError || err instanceof ImageRejectedError) throw err;
    const e = err as Error & { cause?: { code?: string; message?: string } };
    const detail = e.name === "TimeoutError" ? "the request timed out" : (e.cause?.code ?? e.cause?.message ?? e.message);
    // A redirect to a pre-signed blob URL can end up in a network error's text.
    throw registryError(`Cannot reach the registry for image "${name}": ${redactUrlsIn(detail)}`, true, err);
  }
}

/** Reads a response body, refusing one larger than `limit` bytes (with `tooLarge`'s error when given). */
async function readLimited(res: Response, limit: number, name: string, tooLarge?: () => Error): Promise<Buffer> {
  const declared = Number(res.headers.get("content-length") ?? "0");
  if (declared > limit) {
    await res.body?.cancel();
    throw tooLarge?.() ?? registryError(`Cannot fetch image "${name}": a registry answer of ${declared} bytes exceeds the limit of ${limit}`, false);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  if (res.body) {
    for await (const chunk of res.body) {
      total += chunk.length;
      if (total > limit) throw tooLarge?.() ?? registryError(`Cannot fetch image "${name}": a registry answer exceeds the limit of ${limit} bytes`, false);
      chunks.push(Buffer.from(chunk));
    }
  }
  return Buffer.concat(chunks);
}

/**
 * Basic credentials for `registry` from a Docker config file: BASECACHE_REGISTRY_AUTH_FILE, else
 * $DOCKER_CONFIG/config.json, else ~/.docker/config.json. Credential helpers are not consulted.
 * @throws ConfigError when BASECACHE_REGISTRY_AUTH_FILE names a file that cannot be read
 */
export async function readRegistryCredentials(registry: string): Promise<BasicCredentials | undefined> {
  const explicit = process.env.BASECACHE_REGISTRY_AUTH_FILE;
  const path = explicit || join(process.env.DOCKER_CONFIG || join(homedir(), ".docker"), "config.json");
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if (explicit) throw new ConfigError(`Cannot read registry credentials "${path}": ${(err as Error).message}`, { cause: err });
    return undefined;
  }
  return findDockerConfigCredentials(text, registry);
}
