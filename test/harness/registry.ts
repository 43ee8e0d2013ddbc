/**
 * A real OCI registry for tests: Debian's `docker-registry` (distribution 2.8) on a free loopback port with its
 * storage in a temp dir, optionally behind a real bearer-token server; plus helpers that push images through
 * the registry's HTTP API (blob uploads, manifest PUTs) exactly as a client such as ORAS or docker would.
 */
import { createHash, createPrivateKey, randomBytes, randomUUID, sign, type KeyObject } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { execa, type ResultPromise } from "execa";
import { eventually } from "./eventually.js";

export const OciManifestType = "application/vnd.oci.image.manifest.v1+json";
export const OciIndexType = "application/vnd.oci.image.index.v1+json";
export const DockerManifestType = "application/vnd.docker.distribution.manifest.v2+json";
export const DockerListType = "application/vnd.docker.distribution.manifest.list.v2+json";

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: { os: string; architecture: string; variant?: string };
}

export interface TokenAuthOptions {
  /** Users the token server accepts with basic credentials. */
  users?: Record<string, string>;
  /** Repositories pulled only by those users; anonymous callers get a token without access to them. */
  privateRepos?: string[];
}

export interface TestRegistry {
  /** `127.0.0.1:<port>`, the registry part of an image reference. */
  host: string;
  /** `http://127.0.0.1:<port>`. */
  url: string;
  dir: string;
  /** A full reference: `host/repo:tag`, or `host/repo@digest` when `tag` starts with `sha256:`. */
  ref(repo: string, tag: string): string;
  pushBlob(repo: string, data: Uint8Array, opts?: { chunkSize?: number }): Promise<{ digest: string; size: number }>;
  /** PUTs a manifest (an object is serialised; a string is sent byte for byte) and returns its digest. */
  pushManifest(repo: string, reference: string, body: object | string, mediaType: string): Promise<{ digest: string; size: number }>;
  deleteBlob(repo: string, digest: string): Promise<void>;
  /** Headers that authorise the harness itself (push and pull) on `repo`. */
  authHeaders(repo: string): Record<string, string>;
  /** How many token requests the token server has answered. */
  tokenRequests(): number;
  stop(): Promise<void>;
}

export function sha256Digest(data: Uint8Array): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

const Service = "basecache-test-registry";
const Issuer = "basecache-test-token-issuer";

/**
 * Starts a registry. With `tokenAuth`, every request needs a bearer token from a token server the harness runs;
 * with `basicAuth`, every request needs one of these users' basic credentials (the registry's htpasswd auth).
 */
export async function startRegistry(opts: { tokenAuth?: TokenAuthOptions; basicAuth?: Record<string, string> } = {}): Promise<TestRegistry> {
  const dir = await mkdtemp(join(tmpdir(), "basecache-registry-"));
  let proc: ResultPromise | undefined;
  let tokens: TokenServer | undefined;
  const cleanup = async () => {
    if (proc && proc.exitCode === null) {
      proc.kill("SIGTERM");
      await Promise.race([proc.catch(() => {}), new Promise((r) => setTimeout(r, 5000))]);
      if (proc.exitCode === null) proc.kill("SIGKILL");
      await proc.catch(() => {});
    }
    await tokens?.close();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    if (opts.tokenAuth) tokens = await startTokenServer(dir, opts.tokenAuth);
    if (opts.basicAuth) await writeHtpasswd(join(dir, "htpasswd"), opts.basicAuth);
    await writeFile(join(dir, "config.yml"), registryConfig(dir, tokens, opts.basicAuth !== undefined));
    proc = execa("docker-registry", ["serve", join(dir, "config.yml")], { stdin: "ignore", stdout: "ignore", stderr: "pipe", reject: false, cleanup: true });
    const host = await listeningAddress(proc);
    const url = `http://${host}`;
    await eventually(async () => {
      const res = await fetch(`${url}/v2/`);
      if (res.status !== 200 && res.status !== 401) throw new Error(`/v2/ answered ${res.status}`);
    }, { timeoutMs: 20_000, description: "registry answers /v2/" });
    const [user, password] = Object.entries(opts.basicAuth ?? {})[0] ?? [];
    const basic = user !== undefined ? `Basic ${Buffer.from(`${user}:${password ?? ""}`).toString("base64")}` : undefined;
    return makeClient(host, url, dir, tokens, basic, cleanup);
  } catch (err) {
    await cleanup();
    throw err;
  }
}

function registryConfig(dir: string, tokens: TokenServer | undefined, basic: boolean): string {
  const auth = tokens
    ? `auth:\n  token:\n    realm: ${tokens.url}/token\n    service: ${Service}\n    issuer: ${Issuer}\n    rootcertbundle: ${tokens.certPath}\n`
    : basic
      ? `auth:\n  htpasswd:\n    realm: basecache-test\n    path: ${join(dir, "htpasswd")}\n`
      : "";
  return [
    "version: 0.1",
    "log:\n  level: info\n  accesslog:\n    disabled: true",
    `storage:\n  filesystem:\n    rootdirectory: ${join(dir, "data")}\n  delete:\n    enabled: true`,
    "http:\n  addr: 127.0.0.1:0\n  secret: basecache-test-secret",
    auth,
  ].join("\n");
}

// NOTE: the registry listens on port 0 and logs the address it got, so there is no free-port race.
function listeningAddress(proc: ResultPromise): Promise<string> {
  return new Promise((resolve, reject) => {
    let seen = "";
    const onData = (chunk: Buffer) => {
      seen += chunk.toString();
      const m = /listening on (127\.0\.0\.1:\d+)/.exec(seen);
      if (m) {
        proc.stderr?.off("data", onData);
        proc.stderr?.resume();
        resolve(m[1] as string);
      }
    };
    proc.stderr?.on("data", onData);
    proc.then((r) => reject(new Error(`docker-registry exited (${r.exitCode}) before listening: ${seen.slice(-2000)}`)), reject);
  });
}

function makeClient(host: string, url: string, dir: string, tokens: TokenServer | undefined, basic: string | undefined, stop: () => Promise<void>): TestRegistry {
  const auth = (repo: string): Record<string, string> =>
    tokens ? { authorization: `Bearer ${tokens.mint(repo, ["pull", "push", "delete"])}` } : basic ? { authorization: basic } : {};
  const check = async (res: Response, what: string, want: number[]) => {
    if (!want.includes(res.status)) throw new Error(`${what}: registry answered ${res.status}: ${await res.text()}`);
  };
  return {
    host,
    url,
    dir,
    ref: (repo, tag) => (tag.startsWith("sha256:") ? `${host}/${repo}@${tag}` : `${host}/${repo}:${tag}`),
    authHeaders: auth,
    tokenRequests: () => tokens?.requests ?? 0,
    stop,
    async pushBlob(repo, data, o = {}) {
      const digest = sha256Digest(data);
      const start = await fetch(`${url}/v2/${repo}/blobs/uploads/`, { method: "POST", headers: auth(repo) });
      await check(start, "start upload", [202]);
      let location = new URL(start.headers.get("location") ?? "", url);
      if (o.chunkSize !== undefined) {
        for (let off = 0; off < data.length; off += o.chunkSize) {
          const chunk = data.subarray(off, Math.min(data.length, off + o.chunkSize));
          const res = await fetch(location, {
            method: "PATCH",
            headers: { ...auth(repo), "content-type": "application/octet-stream", "content-range": `${off}-${off + chunk.length - 1}` },
            body: chunk,
          });
          await check(res, "upload chunk", [202]);
          location = new URL(res.headers.get("location") ?? "", url);
        }
        location.searchParams.set("digest", digest);
        const done = await fetch(location, { method: "PUT", headers: auth(repo) });
        await check(done, "finish chunked upload", [201]);
      } else {
        location.searchParams.set("digest", digest);
        const done = await fetch(location, { method: "PUT", headers: { ...auth(repo), "content-type": "application/octet-stream" }, body: data });
        await check(done, "monolithic upload", [201]);
      }
      return { digest, size: data.length };
    },
    async pushManifest(repo, reference, body, mediaType) {
      const bytes = Buffer.from(typeof body === "string" ? body : JSON.stringify(body));
      const res = await fetch(`${url}/v2/${repo}/manifests/${reference}`, { method: "PUT", headers: { ...auth(repo), "content-type": mediaType }, body: bytes });
      await check(res, `put manifest ${repo}:${reference}`, [201]);
      return { digest: sha256Digest(bytes), size: bytes.length };
    },
    async deleteBlob(repo, digest) {
      const res = await fetch(`${url}/v2/${repo}/blobs/${digest}`, { method: "DELETE", headers: auth(repo) });
      await check(res, `delete blob ${digest}`, [202]);
    },
  };
}

// NOTE: the registry reads only bcrypt htpasswd entries; node has no bcrypt, but perl's crypt() is libxcrypt's.
async function writeHtpasswd(path: string, users: Record<string, string>): Promise<void> {
  const alphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  const lines: string[] = [];
  for (const [user, password] of Object.entries(users)) {
    const salt = Array.from(randomBytes(22), (b) => alphabet[b % 64]).join("");
    const { stdout } = await execa("perl", ["-e", "print crypt($ARGV[0], $ARGV[1])", password, `$2y$05$${salt}`], { stdin: "ignore" });
    if (!stdout.startsWith("$2y$")) throw new Error(`Cannot hash a password for htpasswd: perl's crypt gave "${stdout}"`);
    lines.push(`${user}:${stdout}`);
  }
  await writeFile(path, lines.join("\n") + "\n");
}

interface TokenServer {
  url: string;
  certPath: string;
  requests: number;
  mint(repo: string, actions: string[]): string;
  close(): Promise<void>;
}

const b64url = (data: Buffer | string) => Buffer.from(data).toString("base64url");

// A token server as Docker Hub runs one: anonymous callers get pull tokens, except for private repositories,
// which need basic credentials. Tokens are ES256 JWTs whose x5c chain the registry checks against our cert.
async function startTokenServer(dir: string, opts: TokenAuthOptions): Promise<TokenServer> {
  const keyPath = join(dir, "token.key");
  const certPath = join(dir, "token.crt");
  await execa("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", keyPath, "-out", certPath, "-days", "2", "-subj", "/CN=basecache-test-token"], { stdin: "ignore" });
  const key: KeyObject = createPrivateKey(await readFile(keyPath));
  const certDer = Buffer.from((await readFile(certPath, "utf8")).replace(/-----[^-]+-----|\s/g, ""), "base64");
  const mint = (repo: string, actions: string[]) => {
    const header = b64url(JSON.stringify({ typ: "JWT", alg: "ES256", x5c: [certDer.toString("base64")] }));
    const now = Math.floor(Date.now() / 1000);
    const claims = { iss: Issuer, sub: "", aud: Service, exp: now + 600, nbf: now - 60, iat: now, jti: randomUUID(), access: actions.length ? [{ type: "repository", name: repo, actions }] : [] };
    const input = `${header}.${b64url(JSON.stringify(claims))}`;
    return `${input}.${b64url(sign("sha256", Buffer.from(input), { key, dsaEncoding: "ieee-p1363" }))}`;
  };
  const state = { requests: 0 };
  const server: Server = createServer((req, res) => {
    state.requests++;
    const u = new URL(req.url ?? "/", "http://x");
    const scope = u.searchParams.get("scope") ?? "";
    const [, repo = "", actions = ""] = /^repository:([^:]+):(.*)$/.exec(scope) ?? [];
    const user = basicUser(req.headers.authorization, opts.users ?? {});
    if (req.headers.authorization && user === undefined) {
      res.writeHead(401).end(JSON.stringify({ details: "bad credentials" }));
      return;
    }
    const allowed = (opts.privateRepos ?? []).includes(repo) && user === undefined ? [] : actions.split(",").filter((a) => a === "pull");
    const token = mint(repo, allowed);
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ token, access_token: token, expires_in: 600 }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    certPath,
    get requests() {
      return state.requests;
    },
    mint,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

function basicUser(header: string | undefined, users: Record<string, string>): string | undefined {
  const m = /^Basic (.+)$/.exec(header ?? "");
  if (!m) return undefined;
  const [user, ...rest] = Buffer.from(m[1] as string, "base64").toString("utf8").split(":");
  return user !== undefined && users[user] !== undefined && users[user] === rest.join(":") ? user : undefined;
}

// ---- Test content -------------------------------------------------------------------------------------

/** Makes a qcow2 image with `qemu-img`, writes `pattern` over its first MiB with `qemu-io`, and returns its bytes. */
export async function makeQcow2(dir: string, name: string, pattern: number, virtualSize = "4M"): Promise<{ path: string; bytes: Buffer }> {
  const path = join(dir, name);
  await execa("qemu-img", ["create", "-q", "-f", "qcow2", path, virtualSize], { stdin: "ignore" });
  await execa("qemu-io", ["-f", "qcow2", "-c", `write -P 0x${pattern.toString(16)} 0 1M`, path], { stdin: "ignore" });
  return { path, bytes: await readFile(path) };
}

export interface TarMember {
  /** Path in the archive; may contain `../` (GNU tar is run with -P to keep it). */
  path: string;
  content?: Uint8Array | string;
  /** Make a symbolic link to this target instead of a file. */
  symlink?: string;
  directory?: boolean;
}

/** Builds a tar (or tar.gz) with GNU tar in `format` from the members, in the order given. */
export async function makeTar(dir: string, members: TarMember[], opts: { format?: "gnu" | "pax" | "ustar"; gzip?: boolean } = {}): Promise<Buffer> {
  const root = await mkdtemp(join(dir, "tar-"));
  const work = join(root, "a", "b");
  await mkdir(work, { recursive: true });
  for (const m of members) {
    const p = join(work, m.path);
    await mkdir(m.directory ? p : dirname(p), { recursive: true });
    if (m.symlink !== undefined) await symlink(m.symlink, p);
    else if (!m.directory) await writeFile(p, m.content ?? "");
  }
  const out = join(root, opts.gzip ? "layer.tar.gz" : "layer.tar");
  const args = ["-c", "-P", "--no-recursion", `--format=${opts.format ?? "gnu"}`, "-f", out, ...(opts.gzip ? ["-z"] : []), "--", ...members.map((m) => m.path)];
  await execa("tar", args, { cwd: work, stdin: "ignore" });
  return readFile(out);
}

// ---- Image shapes ---------------------------------------------------------------------------------------

export interface Pushed {
  ref: string;
  manifest: { digest: string; size: number };
  layer?: { digest: string; size: number };
}

const EmptyConfig = "{}";

/** Pushes an OCI artifact (ORAS-style, empty config) whose layers are `layers`, in order. */
export async function pushArtifact(
  reg: TestRegistry,
  repo: string,
  tag: string,
  layers: { data: Uint8Array; mediaType: string; title?: string }[],
  opts: { chunkSize?: number } = {},
): Promise<Pushed> {
  const config = await reg.pushBlob(repo, Buffer.from(EmptyConfig));
  const descs: Descriptor[] = [];
  for (const l of layers) {
    const d = await reg.pushBlob(repo, l.data, opts);
    descs.push({ mediaType: l.mediaType, ...d, ...(l.title !== undefined ? { annotations: { "org.opencontainers.image.title": l.title } } : {}) });
  }
  const manifest = {
    schemaVersion: 2,
    mediaType: OciManifestType,
    artifactType: "application/vnd.basecache.disk.v1",
    config: { mediaType: "application/vnd.oci.empty.v1+json", ...config },
    layers: descs,
  };
  const m = await reg.pushManifest(repo, tag, manifest, OciManifestType);
  return { ref: reg.ref(repo, tag), manifest: m, ...(descs[0] ? { layer: { digest: descs[0].digest, size: descs[0].size } } : {}) };
}

/** Pushes a container image (OCI or Docker schema2 types) with real image config, as a containerDisk is built. */
export async function pushContainerImage(
  reg: TestRegistry,
  repo: string,
  tag: string,
  layers: { data: Uint8Array; gzip: boolean; mediaType?: string }[],
  opts: { docker?: boolean; architecture?: string } = {},
): Promise<Pushed> {
  const docker = opts.docker ?? false;
  const diffIds = layers.map((l) => sha256Digest(l.data));
  const config = Buffer.from(JSON.stringify({ architecture: opts.architecture ?? "amd64", os: "linux", config: {}, rootfs: { type: "layers", diff_ids: diffIds } }));
  const configDesc = await reg.pushBlob(repo, config);
  const descs: Descriptor[] = [];
  for (const l of layers) {
    const mediaType = l.mediaType ?? (docker
      ? l.gzip
        ? "application/vnd.docker.image.rootfs.diff.tar.gzip"
        : "application/vnd.docker.image.rootfs.diff.tar"
      : l.gzip
        ? "application/vnd.oci.image.layer.v1.tar+gzip"
        : "application/vnd.oci.image.layer.v1.tar");
    descs.push({ mediaType, ...(await reg.pushBlob(repo, l.data)) });
  }
  const manifestType = docker ? DockerManifestType : OciManifestType;
  const configType = docker ? "application/vnd.docker.container.image.v1+json" : "application/vnd.oci.image.config.v1+json";
  const manifest = { schemaVersion: 2, mediaType: manifestType, config: { mediaType: configType, ...configDesc }, layers: descs };
  const m = await reg.pushManifest(repo, tag, manifest, manifestType);
  return { ref: reg.ref(repo, tag), manifest: m, ...(descs[0] ? { layer: { digest: descs[0].digest, size: descs[0].size } } : {}) };
}

/** Pushes an index (or Docker manifest list) over manifests already in `repo`. */
export async function pushIndex(
  reg: TestRegistry,
  repo: string,
  tag: string,
  entries: { manifest: { digest: string; size: number }; mediaType?: string; platform?: Descriptor["platform"]; annotations?: Record<string, string> }[],
  opts: { docker?: boolean } = {},
): Promise<Pushed> {
  const type = opts.docker ? DockerListType : OciIndexType;
  const manifests = entries.map((e) => ({
    mediaType: e.mediaType ?? (opts.docker ? DockerManifestType : OciManifestType),
    ...e.manifest,
    ...(e.platform ? { platform: e.platform } : {}),
    ...(e.annotations ? { annotations: e.annotations } : {}),
  }));
  const m = await reg.pushManifest(repo, tag, { schemaVersion: 2, mediaType: type, manifests }, type);
  return { ref: reg.ref(repo, tag), manifest: m };
}

// ---- A hostile front ------------------------------------------------------------------------------------

export interface TamperingProxy {
  host: string;
  close(): Promise<void>;
}

/**
 * A real HTTP server in front of a registry that forwards every request and lets `tamper` rewrite manifest
 * bodies (and `tamperBlob` blob bodies), as a compromised mirror or a man in the middle on plain http could.
 */
export async function startTamperingProxy(
  reg: TestRegistry,
  tamper: (path: string, body: Buffer) => Buffer,
  tamperBlob: (path: string, body: Buffer) => Buffer = (_path, body) => body,
): Promise<TamperingProxy> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === "string" && k !== "host" && k !== "connection") headers[k] = v;
      const method = req.method ?? "GET";
      fetch(`${reg.url}${req.url ?? "/"}`, { method, headers, redirect: "manual", ...(chunks.length ? { body: Buffer.concat(chunks) } : {}) })
        .then(async (up) => {
          let body: Buffer = Buffer.from(await up.arrayBuffer());
          if (/\/manifests\//.test(req.url ?? "") && method === "GET") body = tamper(req.url ?? "", body);
          if (/\/blobs\//.test(req.url ?? "") && method === "GET" && up.status === 200) body = tamperBlob(req.url ?? "", body);
          const out: Record<string, string> = {};
          up.headers.forEach((v, k) => {
            if (k !== "content-length" && k !== "transfer-encoding" && k !== "connection") out[k] = v;
          });
          res.writeHead(up.status, { ...out, ...(method === "HEAD" ? { "content-length": up.headers.get("content-length") ?? "0" } : { "content-length": String(body.length) }) });
          res.end(method === "HEAD" ? undefined : body);
        })
        .catch((err: unknown) => res.writeHead(502).end(String(err)));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    host: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
