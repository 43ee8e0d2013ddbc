import { test } from "node:test";
import assert from "node:assert/strict";
import {
  MediaType,
  TitleAnnotation,
  chooseDiskLayer,
  choosePlatformManifest,
  layerPacking,
  parseManifestDocument,
  type Descriptor,
  type Platform,
} from "../../src/core/oci-manifest.js";

let n = 0;
/** A descriptor with a fresh digest. */
function desc(mediaType: string, size = 1000, extra: Partial<Descriptor> = {}): Descriptor {
  n++;
  return { mediaType, digest: `sha256:${n.toString(16).padStart(64, "0")}`, size, annotations: {}, ...extra };
}
const titled = (title: string, mediaType = "application/vnd.oci.image.layer.v1.tar", size = 1000) => desc(mediaType, size, { annotations: { [TitleAnnotation]: title } });

const TarGz = "application/vnd.oci.image.layer.v1.tar+gzip";
const Tar = "application/vnd.oci.image.layer.v1.tar";
const DockerGz = "application/vnd.docker.image.rootfs.diff.tar.gzip";

function manifestBody(over: Record<string, unknown> = {}): string {
  return JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciManifest, config: desc("application/vnd.oci.empty.v1+json", 2), layers: [desc(TarGz)], ...over });
}

test("parses image manifests and indexes of both OCI and Docker types", () => {
  const image = parseManifestDocument(manifestBody(), MediaType.OciManifest);
  assert.ok(image.ok && image.value.kind === "image" && image.value.layers.length === 1);
  const docker = parseManifestDocument(manifestBody({ mediaType: MediaType.DockerManifest }), MediaType.DockerManifest);
  assert.ok(docker.ok && docker.value.kind === "image" && docker.value.mediaType === MediaType.DockerManifest);
  const entry = { ...desc(MediaType.OciManifest), platform: { os: "linux", architecture: "arm64", variant: "v8" } };
  const index = parseManifestDocument(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [entry] }), "application/vnd.oci.image.index.v1+json; charset=utf-8");
  assert.ok(index.ok && index.value.kind === "index");
  assert.deepEqual(index.value.manifests[0]?.platform, { os: "linux", architecture: "arm64", variant: "v8" });
  const list = parseManifestDocument(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.DockerManifestList, manifests: [] }), undefined);
  assert.ok(list.ok && list.value.kind === "index");
});

test("takes the manifest type from the header, then from the shape, when the body names none", () => {
  const noType = (o: Record<string, unknown>) => JSON.stringify({ schemaVersion: 2, ...o });
  const a = parseManifestDocument(noType({ config: desc("x"), layers: [] }), MediaType.DockerManifest);
  assert.ok(a.ok && a.value.mediaType === MediaType.DockerManifest);
  const b = parseManifestDocument(noType({ manifests: [] }), "application/json");
  assert.ok(b.ok && b.value.kind === "index");
  const c = parseManifestDocument(noType({ config: desc("x"), layers: [] }), undefined);
  assert.ok(c.ok && c.value.kind === "image");
});

test("refuses broken, foreign and mislabelled manifests with a reason", () => {
  const table: [string, string | undefined, string, RegExp][] = [
    ["not json", undefined, "corrupt", /not valid JSON/],
    ["[1]", undefined, "corrupt", /not a JSON object/],
    [JSON.stringify({ schemaVersion: 1, name: "x", fsLayers: [] }), undefined, "unsupported-format", /schemaVersion 1/],
    [manifestBody(), MediaType.OciIndex, "corrupt", /served as/],
    [manifestBody({ mediaType: "application/vnd.oci.artifact.manifest.v1+json" }), undefined, "unsupported-format", /media type/],
    [manifestBody({ layers: "x" }), undefined, "corrupt", /"layers"/],
    [manifestBody({ config: undefined }), undefined, "corrupt", /"config"/],
    [manifestBody({ layers: [{ ...desc(Tar), digest: "sha256:../../etc" }] }), undefined, "unsupported-format", /sha256:<hex>/],
    [manifestBody({ layers: [{ ...desc(Tar), digest: `sha512:${"a".repeat(128)}` }] }), undefined, "unsupported-format", /digest/],
    [manifestBody({ layers: [{ ...desc(Tar), size: -1 }] }), undefined, "corrupt", /invalid size/],
    [manifestBody({ layers: [{ ...desc(Tar), size: 1.5 }] }), undefined, "corrupt", /invalid size/],
    [manifestBody({ layers: [{ ...desc(Tar), size: "10" }] }), undefined, "corrupt", /invalid size/],
    [manifestBody({ layers: [{ ...desc(Tar), mediaType: "" }] }), undefined, "corrupt", /mediaType/],
    [JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [{ mediaType: MediaType.OciManifest }] }), undefined, "unsupported-format", /manifests\[0\]/],
  ];
  for (const [body, contentType, reason, message] of table) {
    const d = parseManifestDocument(body, contentType);
    assert.ok(!d.ok, body);
    assert.equal(d.reason, reason, body);
    assert.match(d.message, message, body);
  }
});

test("keeps only string annotations", () => {
  const d = parseManifestDocument(manifestBody({ layers: [{ ...desc(Tar), annotations: { a: "b", c: 1 } }] }), undefined);
  assert.ok(d.ok && d.value.kind === "image");
  assert.deepEqual(d.value.layers[0]?.annotations, { a: "b" });
});

test("picks linux/amd64 from an index, skipping attestations, other types and other platforms", () => {
  const amd = desc(MediaType.OciManifest, 500, { platform: { os: "linux", architecture: "amd64" } });
  const arm = desc(MediaType.OciManifest, 500, { platform: { os: "linux", architecture: "arm64" } });
  const att = desc(MediaType.OciManifest, 500, { platform: { os: "linux", architecture: "amd64" }, annotations: { "vnd.docker.reference.type": "attestation-manifest" } });
  const nested = desc(MediaType.OciIndex, 500, { platform: { os: "linux", architecture: "amd64" } });
  const amdV3 = desc(MediaType.DockerManifest, 500, { platform: { os: "linux", architecture: "amd64", variant: "v3" } });
  const want = { os: "linux", architecture: "amd64" };
  const pick = (ms: Descriptor[], w: Platform = want) => choosePlatformManifest(ms, w);
  assert.deepEqual(pick([arm, att, nested, amd]), { ok: true, value: amd });
  assert.deepEqual(pick([amdV3, amd]), { ok: true, value: amdV3 }, "the first match wins, as docker pulls");
  assert.deepEqual(pick([amd, amdV3], { ...want, variant: "v3" }), { ok: true, value: amdV3 });
  const none = pick([arm, att, nested]);
  assert.ok(!none.ok && none.reason === "not-a-disk");
  assert.match(none.message, /linux\/amd64 \(offered: linux\/arm64\)$/, "attestations and indexes are not offered");
  const empty = pick([]);
  assert.ok(!empty.ok && /offered: none/.test(empty.message));
});

test("an index of one manifest without a platform is an artifact index and resolves to it", () => {
  const only = desc(MediaType.OciManifest);
  assert.deepEqual(choosePlatformManifest([only], { os: "linux", architecture: "amd64" }), { ok: true, value: only });
  const two = choosePlatformManifest([only, desc(MediaType.OciManifest)], { os: "linux", architecture: "amd64" });
  assert.ok(!two.ok);
});

test("knows how layer media types are packed", () => {
  const table: [string, string][] = [
    [Tar, "tar"],
    [TarGz, "tar+gzip"],
    ["application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", "tar+gzip"],
    ["application/vnd.docker.image.rootfs.diff.tar", "tar"],
    [DockerGz, "tar+gzip"],
    ["application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "tar+gzip"],
    ["application/x-tar", "tar"],
    ["application/vnd.oci.image.layer.v1.tar+zstd", "tar+zstd"],
    ["application/vnd.oci.image.layer.nondistributable.v1.tar+zstd", "tar+zstd"],
    ["application/vnd.docker.image.rootfs.diff.tar.zstd", "tar+zstd"],
    // No registry media type names xz: an xz blob is an artifact, decoded by its magic like any download.
    ["application/x-xz", "none"],
    ["application/vnd.qemu.qcow2", "none"],
    ["application/octet-stream", "none"],
  ];
  for (const [type, want] of table) assert.equal(layerPacking(type), want, type);
});

test("chooses the disk layer by title, then by being the only layer, then the largest tar", () => {
  const disk = titled("debian.QCOW2");
  const readme = titled("README.md", "text/markdown", 10);
  const table: { name: string; layers: Descriptor[]; pick: Descriptor; unpack: string }[] = [
    { name: "titled disk among other layers", layers: [readme, disk], pick: disk, unpack: "none" },
    { name: "titled disk labelled tar by ORAS is still the raw file", layers: [disk], pick: disk, unpack: "none" },
  ];
  const lone = desc("application/vnd.qemu.qcow2");
  table.push({ name: "only layer, a blob", layers: [lone], pick: lone, unpack: "none" });
  const loneTar = desc(TarGz);
  table.push({ name: "only layer, a containerDisk", layers: [loneTar], pick: loneTar, unpack: "tar+gzip" });
  const empty = desc(MediaType.OciEmpty, 2);
  const zero = desc(Tar, 0);
  table.push({ name: "empty and zero-size layers are ignored", layers: [empty, zero, loneTar], pick: loneTar, unpack: "tar+gzip" });
  const small = desc(DockerGz, 100);
  const big = desc(DockerGz, 100_000);
  table.push({ name: "largest of several tar layers", layers: [big, small], pick: big, unpack: "tar+gzip" });
  const zstdTar = desc("application/vnd.oci.image.layer.v1.tar+zstd");
  table.push({ name: "only layer, a zstd containerDisk", layers: [zstdTar], pick: zstdTar, unpack: "tar+zstd" });
  const dockerZstd = desc("application/vnd.docker.image.rootfs.diff.tar.zstd", 300_000);
  table.push({ name: "largest of gzip and docker zstd tar layers", layers: [small, dockerZstd], pick: dockerZstd, unpack: "tar+zstd" });
  const plainTar = desc(Tar, 200_000);
  table.push({ name: "largest of mixed tar packings", layers: [small, plainTar], pick: plainTar, unpack: "tar" });
  for (const t of ["a.img", "a.raw", "a.vmdk", "a.vhdx", "a.vdi", "a.qcow2"]) {
    const l = titled(t);
    table.push({ name: `title ${t}`, layers: [readme, l], pick: l, unpack: "none" });
  }
  for (const row of table) {
    const d = chooseDiskLayer(row.layers);
    assert.ok(d.ok, `${row.name}: ${d.ok ? "" : d.message}`);
    assert.equal(d.value.layer, row.pick, row.name);
    assert.equal(d.value.unpack, row.unpack, row.name);
  }
});

test("refuses images whose disk layer is missing or ambiguous", () => {
  const table: { name: string; layers: Descriptor[]; reason: string; message: RegExp }[] = [
    { name: "no layers", layers: [], reason: "not-a-disk", message: /no layers/ },
    { name: "only empty layers", layers: [desc(MediaType.OciEmpty, 2), desc(Tar, 0)], reason: "not-a-disk", message: /no layers/ },
    { name: "two titled disks", layers: [titled("a.qcow2"), titled("b.img")], reason: "not-a-disk", message: /several disk layers \("a.qcow2", "b.img"\)/ },
    { name: "two untitled blobs", layers: [desc("application/octet-stream"), desc("application/octet-stream")], reason: "not-a-disk", message: /none is titled/ },
    { name: "blob plus tar", layers: [desc("application/octet-stream"), desc(TarGz)], reason: "not-a-disk", message: /none is titled/ },
    { name: "titles that are only an extension", layers: [titled(".qcow2", "application/octet-stream"), titled(".img", "application/octet-stream")], reason: "not-a-disk", message: /none is titled/ },
    { name: "two tar layers of equal size", layers: [desc(TarGz, 5), desc(TarGz, 5)], reason: "not-a-disk", message: /same largest size/ },
  ];
  for (const row of table) {
    const d = chooseDiskLayer(row.layers);
    assert.ok(!d.ok, row.name);
    assert.equal(d.reason, row.reason, row.name);
    assert.match(d.message, row.message, row.name);
  }
});
