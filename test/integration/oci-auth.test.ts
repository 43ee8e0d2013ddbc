import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resolveRegistryImage } from "../../src/image/oci-fetch.js";
import { FetchError, ImageRejectedError } from "../../src/lib/errors.js";
import { makeQcow2, pushArtifact, sha256Digest, startRegistry, startTamperingProxy, type TestRegistry } from "../harness/registry.js";

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  assert.fail("expected a rejection");
}

async function withAuthFile<T>(content: string | undefined, fn: () => Promise<T>): Promise<T> {
  const saved = process.env.BASECACHE_REGISTRY_AUTH_FILE;
  const dir = await mkdtemp(join(tmpdir(), "basecache-auth-"));
  const path = join(dir, "config.json");
  if (content !== undefined) await writeFile(path, content);
  process.env.BASECACHE_REGISTRY_AUTH_FILE = path;
  try {
    return await fn();
  } finally {
    if (saved === undefined) delete process.env.BASECACHE_REGISTRY_AUTH_FILE;
    else process.env.BASECACHE_REGISTRY_AUTH_FILE = saved;
    await rm(dir, { recursive: true, force: true });
  }
}

const dockerConfig = (host: string, user: string, password: string) => JSON.stringify({ auths: { [host]: { auth: Buffer.from(`${user}:${password}`).toString("base64") } } });

describe("registry authentication against a real token-auth registry", () => {
  let reg: TestRegistry;
  let dir: string;
  let disk: Buffer;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "basecache-oci-auth-test-"));
    reg = await startRegistry({ tokenAuth: { users: { alice: "wonder:land" }, privateRepos: ["private/disk"] } });
    disk = (await makeQcow2(dir, "d.qcow2", 0x5a)).bytes;
    await pushArtifact(reg, "public/disk", "v1", [{ data: disk, mediaType: "application/vnd.qemu.qcow2" }]);
    await pushArtifact(reg, "private/disk", "v1", [{ data: disk, mediaType: "application/vnd.qemu.qcow2" }]);
  });
  after(async () => {
    await reg?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test("an anonymous bearer token is fetched from the challenge's realm and handed to the pipeline", async () => {
    const before = reg.tokenRequests();
    const real = await resolveRegistryImage(reg.ref("public/disk", "v1"), {});
    assert.ok(reg.tokenRequests() > before);
    assert.match(real.headers?.authorization ?? "", /^Bearer /);
    const unauthenticated = await fetch(real.url);
    assert.equal(unauthenticated.status, 401, "the blob needs the token");
    await unauthenticated.body?.cancel();
    const res = await fetch(real.url, { headers: real.headers });
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), disk);
  });

  test("a private repository without credentials is refused with a non-retryable 401", async () => {
    const err = await rejection(resolveRegistryImage(reg.ref("private/disk", "v1"), {}));
    assert.ok(err instanceof FetchError && err.status === 401 && !err.retryable, String(err));
  });

  test("basic credentials from a Docker config file are sent to the token server", async () => {
    const src = await withAuthFile(dockerConfig(reg.host, "alice", "wonder:land"), () => resolveRegistryImage(reg.ref("private/disk", "v1"), {}));
    const res = await fetch(src.url, { headers: src.headers });
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), disk);
  });

  test("wrong credentials fail at the token server", async () => {
    const err = await withAuthFile(dockerConfig(reg.host, "alice", "nope"), () => rejection(resolveRegistryImage(reg.ref("private/disk", "v1"), {})));
    assert.ok(err instanceof FetchError && err.status === 401, String(err));
    assert.match(err.message, /token server answered 401/);
  });

  test("a missing explicit credentials file is a configuration error", async () => {
    const err = await withAuthFile(undefined, () => rejection(resolveRegistryImage(reg.ref("public/disk", "v1"), {})));
    assert.equal(err.name, "ConfigError", String(err));
  });
});

describe("manifest digests against a tampering mirror", () => {
  let reg: TestRegistry;
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "basecache-oci-tamper-test-"));
    reg = await startRegistry();
  });
  after(async () => {
    await reg?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test("a manifest that does not match the pinned digest is refused; the same mirror passes tags", async () => {
    const good = (await makeQcow2(dir, "good.qcow2", 0x11)).bytes;
    const evil = (await makeQcow2(dir, "evil.qcow2", 0x66)).bytes;
    const pushedGood = await pushArtifact(reg, "os/disk", "good", [{ data: good, mediaType: "application/vnd.qemu.qcow2" }]);
    const pushedEvil = await pushArtifact(reg, "os/disk", "evil", [{ data: evil, mediaType: "application/vnd.qemu.qcow2" }]);
    const evilManifest = Buffer.from(await (await fetch(`${reg.url}/v2/os/disk/manifests/evil`, { headers: { accept: "application/vnd.oci.image.manifest.v1+json" } })).arrayBuffer());
    assert.equal(sha256Digest(evilManifest), pushedEvil.manifest.digest);
    const proxy = await startTamperingProxy(reg, () => evilManifest);
    try {
      const err = await rejection(resolveRegistryImage(`${proxy.host}/os/disk@${pushedGood.manifest.digest}`, {}));
      assert.ok(err instanceof ImageRejectedError && err.reason === "checksum-mismatch", String(err));
      // Without a pinned digest nothing can tell the swap apart: the tag resolves to what the mirror says.
      const byTag = await resolveRegistryImage(`${proxy.host}/os/disk:good`, {});
      assert.equal(byTag.expectedDigest, sha256Digest(evil));
    } finally {
      await proxy.close();
    }
  });

  test("an index entry whose manifest was swapped is refused even when the index itself came by tag", async () => {
    const a = (await makeQcow2(dir, "ia.qcow2", 0x21)).bytes;
    const b = (await makeQcow2(dir, "ib.qcow2", 0x22)).bytes;
    const pa = await pushArtifact(reg, "os/multi", "a", [{ data: a, mediaType: "application/vnd.qemu.qcow2" }]);
    await pushArtifact(reg, "os/multi", "b", [{ data: b, mediaType: "application/vnd.qemu.qcow2" }]);
    const index = { schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: [{ mediaType: "application/vnd.oci.image.manifest.v1+json", ...pa.manifest, platform: { os: "linux", architecture: "amd64" } }] };
    await reg.pushManifest("os/multi", "idx", index, "application/vnd.oci.image.index.v1+json");
    const bManifest = Buffer.from(await (await fetch(`${reg.url}/v2/os/multi/manifests/b`, { headers: { accept: "application/vnd.oci.image.manifest.v1+json" } })).arrayBuffer());
    const proxy = await startTamperingProxy(reg, (path, body) => (path.includes(pa.manifest.digest) ? bManifest : body));
    try {
      const err = await rejection(resolveRegistryImage(`${proxy.host}/os/multi:idx`, {}));
      assert.ok(err instanceof ImageRejectedError && err.reason === "checksum-mismatch", String(err));
    } finally {
      await proxy.close();
    }
  });
});

describe("registry authentication against a real htpasswd (basic auth) registry", () => {
  let reg: TestRegistry;
  let dir: string;
  let disk: Buffer;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "basecache-oci-basic-test-"));
    reg = await startRegistry({ basicAuth: { bob: "b0b-secret" } });
    disk = (await makeQcow2(dir, "d.qcow2", 0x3c)).bytes;
    await pushArtifact(reg, "team/disk", "v1", [{ data: disk, mediaType: "application/vnd.qemu.qcow2" }]);
  });
  after(async () => {
    await reg?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test("basic credentials from a Docker config file answer a Basic challenge and go to the pipeline", async () => {
    const src = await withAuthFile(dockerConfig(reg.host, "bob", "b0b-secret"), () => resolveRegistryImage(reg.ref("team/disk", "v1"), {}));
    assert.match(src.headers?.authorization ?? "", /^Basic /);
    const res = await fetch(src.url, { headers: src.headers });
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), disk);
  });

  test("a Basic challenge without configured credentials is a non-retryable registry error", async () => {
    const err = await withAuthFile(dockerConfig("elsewhere.lan", "bob", "b0b-secret"), () => rejection(resolveRegistryImage(reg.ref("team/disk", "v1"), {})));
    assert.ok(err instanceof FetchError && err.reason === "registry" && !err.retryable, String(err));
    assert.match(err.message, /none are configured/);
  });

  test("wrong basic credentials are refused with 401", async () => {
    const err = await withAuthFile(dockerConfig(reg.host, "bob", "wrong"), () => rejection(resolveRegistryImage(reg.ref("team/disk", "v1"), {})));
    assert.ok(err instanceof FetchError && err.status === 401 && !err.retryable, String(err));
  });
});
