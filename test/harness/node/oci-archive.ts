/**
 * Pushes an OCI archive (an OCI image layout in a tar, as `buildah push ... oci-archive:` writes one) into a
 * registry through the distribution HTTP API: each blob once (skipped when the registry has it), streamed
 * from disk, then the manifests, the top one under the archive's tag. No skopeo, and nothing is left in any
 * container storage of the host.
 */
import { createReadStream } from "node:fs";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";

/** An image as an OCI archive on disk and the `repo:tag` it is pushed as (no registry host). */
export interface OciImage {
  archive: string;
  name: string;
}

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

interface ManifestLike {
  mediaType?: string;
  config?: Descriptor;
  layers?: Descriptor[];
  manifests?: Descriptor[];
}

const IndexTypes = new Set(["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"]);

function blobPath(layout: string, digest: string): string {
  const m = /^sha256:([0-9a-f]{64})$/.exec(digest);
  if (!m) throw new Error(`Cannot push ${layout}: digest "${digest}" is not sha256`);
  return join(layout, "blobs", "sha256", m[1] as string);
}

/** One HTTP request to the registry; resolves status, headers and body text. */
function call(url: URL, method: string, headers: Record<string, string>, body?: string | Buffer | { path: string; size: number }) {
  return new Promise<{ status: number; location: string | undefined; text: string }>((resolve, reject) => {
    const size = body === undefined ? 0 : typeof body === "string" || Buffer.isBuffer(body) ? Buffer.byteLength(body) : body.size;
    const req = request(url, { method, headers: { ...headers, "content-length": String(size) }, timeout: 300_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, location: res.headers.location, text: Buffer.concat(chunks).toString() }));
    });
    req.on("timeout", () => req.destroy(new Error(`${method} ${url.href} timed out`)));
    req.on("error", reject);
    if (body !== undefined && typeof body === "object" && !Buffer.isBuffer(body)) createReadStream(body.path).on("error", reject).pipe(req);
    else req.end(body);
  });
}

async function pushBlob(base: string, repo: string, layout: string, d: Descriptor): Promise<void> {
  const head = await call(new URL(`/v2/${repo}/blobs/${d.digest}`, base), "HEAD", {});
  if (head.status === 200) return;
  const start = await call(new URL(`/v2/${repo}/blobs/uploads/`, base), "POST", {});
  if (start.status !== 202 || !start.location) throw new Error(`Cannot push ${d.digest} to ${base}/${repo}: upload start answered ${start.status} ${start.text}`);
  const url = new URL(start.location, base);
  url.searchParams.set("digest", d.digest);
  const path = blobPath(layout, d.digest);
  const done = await call(url, "PUT", { "content-type": "application/octet-stream" }, { path, size: (await stat(path)).size });
  if (done.status !== 201) throw new Error(`Cannot push ${d.digest} to ${base}/${repo}: upload answered ${done.status} ${done.text}`);
}

async function pushManifest(base: string, repo: string, layout: string, d: Descriptor, reference: string): Promise<void> {
  const bytes = await readFile(blobPath(layout, d.digest));
  const m = JSON.parse(bytes.toString()) as ManifestLike;
  const type = m.mediaType ?? d.mediaType;
  if (IndexTypes.has(type)) {
    for (const child of m.manifests ?? []) await pushManifest(base, repo, layout, child, child.digest);
  } else {
    for (const blob of [...(m.config ? [m.config] : []), ...(m.layers ?? [])]) await pushBlob(base, repo, layout, blob);
  }
  // The bytes as they are: the digest the archive names must be the digest the registry stores.
  const put = await call(new URL(`/v2/${repo}/manifests/${reference}`, base), "PUT", { "content-type": type }, bytes);
  if (put.status !== 201) throw new Error(`Cannot push manifest ${repo}:${reference} to ${base}: registry answered ${put.status} ${put.text}`);
}

/** Pushes `image` into the registry at `host` (`127.0.0.1:PORT`, plain http); resolves `host/name`. */
export async function pushOciArchive(image: OciImage, host: string): Promise<string> {
  const [repo, tag = "latest"] = image.name.split(/:(?=[^:/]+$)/);
  if (!repo || !/^[a-z0-9]+([._/-][a-z0-9]+)*$/.test(repo)) throw new Error(`Cannot push ${image.archive}: "${image.name}" is not a repo:tag name`);
  const layout = await mkdtemp(join(tmpdir(), "basecache-oci-"));
  try {
    await execa("tar", ["-x", "-f", image.archive, "-C", layout, "--no-same-owner"], { stdin: "ignore" });
    const index = JSON.parse(await readFile(join(layout, "index.json"), "utf8")) as { manifests?: Descriptor[] };
    const top = index.manifests ?? [];
    if (top.length !== 1) throw new Error(`Cannot push ${image.archive}: its index.json lists ${top.length} images, not one`);
    await pushManifest(`http://${host}`, repo, layout, top[0] as Descriptor, tag);
    return `${host}/${repo}:${tag}`;
  } finally {
    await rm(layout, { recursive: true, force: true });
  }
}
