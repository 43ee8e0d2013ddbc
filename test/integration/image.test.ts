// The basecache image built for real: hack/build-image.sh (buildah, the Containerfile on the stand-in base)
// gives an OCI archive, and a second build is a cache hit that leaves the archive as it was. The image passes
// the audit (nothing of the build machine, user 65532, the tools) and an image with planted files does not.
// Run by podman as the manifests run it (read-only, 65532, no capabilities, no new privileges), `--help`
// works, the tools run, and `basecache fetch` of a qcow2 from a real origin makes a raw base in a mounted dir
// (qemu-img under setpriv and prlimit inside). Skips with one line when the machine cannot build images.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { execa } from "execa";
import { createHash } from "node:crypto";
import { chown, mkdtemp, readFile, rm, stat, writeFile, mkdir } from "node:fs/promises";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { ImageDir, sameContent } from "../harness/images.js";
import { auditRootfs, hostInputs, ImageUser } from "../harness/node/image-audit.js";
import { ensureAgentImage, imageBuildUnavailable, type AgentImage } from "../harness/node/images.js";
import { imageUser, loadArchive, runRestricted, withImageRootfs } from "../harness/node/podman.js";
import { Origin } from "../harness/origin.js";

const unavailable = imageBuildUnavailable();
const version = (JSON.parse(await readFile(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }).version;
const seconds = (t0: number): string => ((performance.now() - t0) / 1000).toFixed(1);

describe("the basecache image", { skip: unavailable ? `cannot build images here: ${unavailable}` : false }, () => {
  let image: AgentImage;

  test("hack/build-image.sh builds (or reuses) the OCI archive; a second run is a cache hit that leaves it as it was", async (t) => {
    const t0 = performance.now();
    image = await ensureAgentImage();
    t.diagnostic(`first ensureAgentImage: ${seconds(t0)} s (cold when the cache was empty)`);
    assert.equal(image.name, `localhost/basecache:${version}`);
    assert.ok(image.archive.startsWith(join(homedir(), ".cache/basecache/images/")), image.archive);
    assert.match(image.archive, new RegExp(`/basecache-${version.replace(/\./g, "\\.")}-[0-9a-f]{12}\\.oci\\.tar$`));
    const before = await stat(image.archive);
    const t1 = performance.now();
    const again = await ensureAgentImage();
    t.diagnostic(`second ensureAgentImage (warm): ${seconds(t1)} s`);
    assert.deepEqual(again, image);
    assert.equal((await stat(image.archive)).mtimeMs, before.mtimeMs, "the warm run did not rebuild the archive");
    if (image.base.archive) assert.match(image.base.name, /^localhost\/basecache-node-standin:20\.20\.2-bookworm-[0-9a-f]{12}$/);
    t.diagnostic(`app ${image.archive} ${image.name}; base ${image.base.archive ?? "-"} ${image.base.name}`);
    await loadArchive(image.archive);
  });

  test("the image passes the audit: nothing of the build machine, user 65532:65532, node, qemu-img, prlimit, setpriv", async () => {
    const host = await hostInputs();
    const user = await imageUser(image.name);
    assert.equal(user, ImageUser);
    const findings = await withImageRootfs(image.name, (rootfs) => auditRootfs({ rootfs, user, ...host }));
    assert.deepEqual(findings, [], "no findings");
  });

  test("an image made from it with the build machine's CA bundle, an npmrc, a .git and root as user fails the audit", async (t) => {
    const ctr = (await execa("buildah", ["from", "--pull=never", image.name])).stdout.trim();
    t.after(() => execa("buildah", ["rm", ctr], { reject: false }));
    const host = await hostInputs();
    const bundle = host.hostFiles.find((f) => f.endsWith(".crt"));
    assert.ok(bundle, "the build machine has a CA bundle to plant");
    await execa("buildah", ["copy", ctr, bundle, "/usr/share/host-bundle.crt"]);
    await execa("buildah", ["config", "--user", "0:0", ctr]);
    const rootfs = (await execa("buildah", ["mount", ctr])).stdout.trim();
    await mkdir(join(rootfs, "app/.git"), { recursive: true });
    await writeFile(join(rootfs, "app/.git/HEAD"), "ref: refs/heads/main\n");
    await writeFile(join(rootfs, "root/.npmrc"), `cafile=${bundle}\n`);
    const user = (await execa("buildah", ["inspect", "--format", "{{.OCIv1.Config.User}}", ctr])).stdout.trim();
    const findings = await auditRootfs({ rootfs, user, ...host });
    for (const w of [/^image user is "0:0"/, /^\/usr\/share\/host-bundle\.crt: a copy of the build machine's /, /^\/app\/\.git: \.git in the image$/, /^\/root\/\.npmrc: \.npmrc in the image$/]) {
      assert.ok(findings.some((f) => w.test(f)), `a finding matching ${String(w)} in:\n${findings.join("\n")}`);
    }
    if (host.hostCaCerts.length > 0) assert.ok(findings.some((f) => /^\/usr\/share\/host-bundle\.crt: holds a CA certificate/.test(f)), findings.join("\n"));
  });

  test("run restricted, `basecache --help` works and node 20, qemu-img, prlimit and setpriv run as 65532", async () => {
    const help = await runRestricted(image.name, ["--help"]);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /^Usage: basecache <command>/);
    assert.match(help.stdout, /fetch/);
    const node = await runRestricted(image.name, ["--version"], { entrypoint: "node" });
    assert.match(node.stdout, /^v20\.\d+\.\d+$/);
    const id = await runRestricted(image.name, ["-u"], { entrypoint: "id" });
    assert.equal(id.stdout.trim(), "65532");
    const limited = await runRestricted(image.name, ["--as=2147483648", "--cpu=30", "--", "setpriv", "--pdeathsig", "KILL", "--", "qemu-img", "--version"], { entrypoint: "prlimit" });
    assert.equal(limited.code, 0, limited.stderr);
    assert.match(limited.stdout, /^qemu-img version /);
  });

  test("`basecache fetch` in the container makes a raw base of a real origin's qcow2 in a mounted dir", async (t) => {
    const images = await ImageDir.create();
    const origin = await Origin.start();
    const baseDir = await mkdtemp(join(tmpdir(), "basecache-image-base-"));
    t.after(async () => {
      await origin.close();
      await images.cleanup();
      await rm(baseDir, { recursive: true, force: true });
    });
    await chown(baseDir, 65532, 65532);
    const qcow2 = await images.qcow2("disk.qcow2", 64);
    const url = origin.serve("/disk.qcow2", { file: qcow2 });
    const id = "image-test-disk";
    const t0 = performance.now();
    const r = await runRestricted(image.name, ["fetch", "--json", "--base-dir", "/base", "--id", id, "--url", url, "--timeout", "90s"], { network: "host", volumes: [`${baseDir}:/base`] });
    t.diagnostic(`fetch in the container: ${seconds(t0)} s`);
    assert.equal(r.code, 0, `exit ${r.code}: ${r.stdout} ${r.stderr}`);
    const json = JSON.parse(r.stdout) as { status: string; format: string; path: string };
    const name = createHash("sha1").update(id).digest("hex");
    assert.equal(json.status, "ready");
    assert.equal(json.format, "qcow2");
    assert.equal(json.path, `/base/${name}`);
    assert.equal(origin.requestsTo("/disk.qcow2") >= 1, true);
    const base = join(baseDir, name);
    const st = await stat(base);
    assert.equal(st.uid, 65532, "written by the image's user");
    const info = JSON.parse((await execa("qemu-img", ["info", "--output=json", "-f", "raw", base])).stdout) as { "virtual-size": number };
    assert.equal(info["virtual-size"], 64 * 1024 * 1024);
    assert.ok(await sameContent(base, qcow2, "qcow2"), "the raw base holds the qcow2's content");
  });
});
