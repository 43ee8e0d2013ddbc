/**
 * updatePolicy through the cluster: the real controller (its own ServiceAccount, deploy/'s RBAC) checks a real
 * HTTP origin whose file changes and a real registry whose tag moves; the real agent (its ServiceAccount) fetches
 * each version under its own name, moves the `.current` pointer once the new one is Ready, keeps the old base
 * while an overlay uses it, and GC removes it when its last user goes. A version's precondition is also shown to
 * stop a download of bytes that are no longer the version (the pipeline against the origin, no cluster).
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile, rm, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { baseNameFor, versionedBaseName } from "../../src/core/names.js";
import type { VersionRecord } from "../../src/core/api-records.js";
import { fetchImage } from "../../src/image/pipeline.js";
import { describeOutcome } from "../../src/image/outcome.js";
import { agentKubeconfig, applyAgentIdentity, makeNodeDirs, removeNodeDirs, startAgent, type AgentProcess, type NodeDirs } from "../harness/agent-process.js";
import { startControlPlane, type ControlPlane } from "../harness/control-plane.js";
import { startController, type ControllerProcess } from "../harness/controller-process.js";
import { eventually } from "../harness/eventually.js";
import { startCli } from "../harness/fetch-cli.js";
import { ImageDir } from "../harness/images.js";
import { Api } from "../harness/kube-api.js";
import { applyObjects, readManifests } from "../harness/manifests.js";
import { Origin } from "../harness/origin.js";
import { pushArtifact, startRegistry, type TestRegistry } from "../harness/registry.js";
import { annotateNic, imageStatus } from "./agent-helpers.js";

const repoRoot = resolve(fileURLToPath(new URL("../..", import.meta.url)));
const ns = "basecache-system";
const node = "versions-node";
const Qcow2Type = "application/vnd.qemu.qcow2";

let cp: ControlPlane;
let admin: Api;
let origin: Origin;
let reg: TestRegistry;
let images: ImageDir;
let ctl: ControllerProcess;
let agent: AgentProcess;
let dirs: NodeDirs;

before(async () => {
  cp = await startControlPlane();
  await cp.applyCrds();
  await applyAgentIdentity(cp);
  await applyObjects(cp.adminConfig(), await readManifests(["10-controller-rbac.yaml"].map((f) => join(repoRoot, "deploy", f))));
  admin = new Api(cp.adminConfig());
  origin = await Origin.start();
  reg = await startRegistry();
  images = await ImageDir.create();
});

after(async () => {
  await agent?.stop();
  await ctl?.stop();
  await origin?.close();
  await reg?.stop();
  await images?.cleanup();
  await cp?.stop();
  if (dirs) await removeNodeDirs(dirs);
});

async function versionsOf(name: string): Promise<VersionRecord[]> {
  const ic = (await admin.imageCache(name)) as { status?: { versions?: VersionRecord[] } };
  return ic.status?.versions ?? [];
}

async function pointerOf(id: string): Promise<{ version: string; base: string } | undefined> {
  const text = await readFile(join(dirs.base, `${baseNameFor(id)}.current`), "utf8").catch(() => undefined);
  return text === undefined ? undefined : (JSON.parse(text) as { version: string; base: string });
}

async function gcPasses(): Promise<number> {
  return (await agent.metrics()).get('basecache_gc_passes_total{outcome="done"}') ?? 0;
}

async function runGc(value: string): Promise<void> {
  const before = await gcPasses();
  await annotateNic(admin, node, { "basecache.io/gc-requested": value });
  await eventually(async () => assert.ok((await gcPasses()) > before), { timeoutMs: 60_000, description: "a requested GC pass" });
}

// The placement label VM pods select on: the node is Ready for the tracked images' pinned definitions.
async function placedReady(when: string): Promise<void> {
  await eventually(async () => assert.equal((await admin.core.readNode({ name: node })).metadata?.labels?.["imagecache.basecache.io/tracked"], "ready"), {
    timeoutMs: 30_000,
    description: `the node labelled Ready for the ImageCache ${when}`,
  });
}

async function cli(args: string[]): Promise<string> {
  const r = await startCli(args);
  assert.equal(r.exitCode, 0, `basecache ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

test("a changed file and a moved tag are new versions: fetched beside the old ones, current once Ready, the old base kept while an overlay uses it", async () => {
  // Random contents: every image here differs from every other.
  const distinct = async (name: string, mib: number) => images.convert(await images.raw(`${name}.raw`, mib), `${name}.qcow2`, "qcow2");
  const web1 = await distinct("web-1", 8);
  const web2 = await distinct("web-2", 8);
  origin.serve("/cloud/web.qcow2", { file: web1 }, { etag: '"web-1"' });
  await pushArtifact(reg, "os/tracked", "stable", [{ data: await readFile(await distinct("reg-1", 4)), mediaType: Qcow2Type }]);

  const sa = await cp.serviceAccountConfig(ns, "basecache-controller");
  ctl = startController(sa.kubeconfigPath, ["--status-interval", "0s"], { POD_NAMESPACE: ns });
  await ctl.leading();
  await admin.createNode(node);
  dirs = await makeNodeDirs(node);
  agent = startAgent({ node, dirs, kubeconfigPath: await agentKubeconfig(cp, node, dirs.root), args: [], defaultAddrs: false });
  await admin.createImageCache("tracked", {
    images: [
      { id: "web", source: { http: { url: origin.url("/cloud/web.qcow2") } }, updatePolicy: { interval: "1m" } },
      { id: "reg", source: { registry: { image: reg.ref("os/tracked", "stable") } }, updatePolicy: { interval: "1m" } },
    ],
    retention: { unusedFor: "0s" },
  });

  // First versions: found by the controller, fetched under sha1(id@version), made current by the pointer.
  const first = await eventually(
    async () => {
      const v = await versionsOf("tracked");
      assert.equal(v.length, 2, JSON.stringify(v));
      for (const id of ["web", "reg"]) {
        const s = await imageStatus(admin, node, id);
        const r = v.find((x) => x.id === id);
        assert.equal(s?.phase, "Ready", `${id}: ${s?.message ?? ""}`);
        assert.equal(s?.version, r?.current?.name);
        assert.equal((await pointerOf(id))?.version, r?.current?.name);
      }
      return new Map(v.map((r) => [r.id, r.current!.name]));
    },
    { timeoutMs: 120_000, description: "both tracked images Ready at their first version" },
  );
  const webV1 = versionedBaseName("web", first.get("web")!);
  const regV1 = versionedBaseName("reg", first.get("reg")!);
  assert.equal((await imageStatus(admin, node, "web"))?.base, webV1);
  const sidecar = JSON.parse(await readFile(join(dirs.base, `${webV1}.info.json`), "utf8")) as { version?: { name: string; etag?: string } };
  assert.deepEqual([sidecar.version?.name, sidecar.version?.etag], [first.get("web"), '"web-1"'], "the sidecar records the version and what pinned it");

  await placedReady("at the first versions");

  // A pass while the first versions are wanted records their retention (0s), as the periodic pass would.
  await runGc("0");

  // An overlay on the first version, as a VM's disk.
  const vm1 = join(dirs.instances, "vm1.qcow2");
  assert.match(await cli(["disk", "create", "--base-dir", dirs.base, "--id", "web", "--out", vm1]), new RegExp(`version ${first.get("web")}`));
  assert.match(await cli(["disk", "inspect", vm1]), new RegExp(`image "web", version ${first.get("web")}`));

  // Upstream moves: a new file under the same URL, the tag on a new manifest.
  origin.serve("/cloud/web.qcow2", { file: web2 }, { etag: '"web-2"' });
  await pushArtifact(reg, "os/tracked", "stable", [{ data: await readFile(await distinct("reg-2", 4)), mediaType: Qcow2Type }]);

  const second = await eventually(
    async () => {
      const v = await versionsOf("tracked");
      const out = new Map<string, string>();
      for (const id of ["web", "reg"]) {
        const r = v.find((x) => x.id === id);
        assert.ok(r?.current && r.current.name !== first.get(id), `${id} has a new version: ${JSON.stringify(r)}`);
        assert.deepEqual(r.previous, [first.get(id)]);
        const s = await imageStatus(admin, node, id);
        assert.equal(s?.phase, "Ready", `${id}: ${s?.message ?? ""}`);
        assert.equal(s?.version, r.current.name);
        assert.equal((await pointerOf(id))?.version, r.current.name);
        out.set(id, r.current.name);
      }
      return out;
    },
    { timeoutMs: 180_000, intervalMs: 1000, description: "both tracked images Ready at their second version" },
  );
  const webV2 = versionedBaseName("web", second.get("web")!);
  await placedReady("at the second versions");
  const status = await imageStatus(admin, node, "web");
  assert.deepEqual(status?.previousVersions, [{ version: first.get("web"), base: webV1 }], "the node lists the version still on disk");

  // The overlay made on the old version still reads as the old image; a new disk gets the new version.
  await execa("qemu-img", ["compare", "-f", "qcow2", "-F", "qcow2", vm1, web1]);
  await assert.rejects(execa("qemu-img", ["compare", "-q", "-f", "qcow2", "-F", "qcow2", vm1, web2]), "the two versions differ");
  const vm2 = join(dirs.instances, "vm2.qcow2");
  await cli(["disk", "create", "--base-dir", dirs.base, "--id", "web", "--out", vm2]);
  await execa("qemu-img", ["compare", "-f", "qcow2", "-F", "qcow2", vm2, web2]);
  assert.match(await cli(["disk", "inspect", vm2]), new RegExp(`version ${second.get("web")}`));

  // GC: the registry image's old version has no user and goes; the web one stays under vm1 until vm1 goes.
  await runGc("1");
  await assert.rejects(stat(join(dirs.base, regV1)), "the unused old version is removed");
  await stat(join(dirs.base, webV1));
  await stat(join(dirs.base, webV2));
  await rm(vm1);
  await runGc("2");
  await assert.rejects(stat(join(dirs.base, webV1)), "the old version goes with its last user");
  await stat(join(dirs.base, webV2));
  await eventually(async () => assert.equal((await imageStatus(admin, node, "web"))?.previousVersions, undefined), { description: "no previous version listed once it is gone" });
});

test("a download whose origin changed since the version was found is stopped by its precondition, and nothing is left", async () => {
  const served = await images.qcow2("moved.qcow2", 4);
  origin.serve("/moved/img.qcow2", { file: served }, { etag: '"now"' });
  const baseDir = images.path("precondition-base");
  const version = { name: "0123456789ab", resolvedAt: new Date().toISOString(), etag: '"then"' };
  const err = await fetchImage({ baseDir, id: "moved", source: { http: { url: origin.url("/moved/img.qcow2") } }, version, preconditions: { "if-match": '"then"' } }).then(
    () => assert.fail("the fetch should fail"),
    (e: unknown) => e,
  );
  const o = describeOutcome(err);
  assert.equal(o.reason, "http-status");
  assert.match(o.message, /no longer the version.*HTTP 412/);
  assert.deepEqual(origin.answered.get("/moved/img.qcow2"), [412]);
  assert.equal((origin.seen.get("/moved/img.qcow2") ?? [])[0]?.["if-match"], '"then"');
  assert.deepEqual((await readdir(baseDir)).filter((n) => !n.endsWith(".lock") && n !== "gc-state.json"), [], "no work file is left");
});
