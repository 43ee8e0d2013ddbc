// The image audit can fail: on a planted rootfs dir (a copy of the build machine's CA bundle, its proxy CA
// inside another file, an npmrc, an npm cache, a .git, the repo's tests, leftovers in /tmp, a missing, a
// non-executable and an escaping tool, the wrong user) it names each planted thing, and on the same rootfs
// without them it finds nothing. Runs anywhere (no root, no buildah); the real image is audited in image.test.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, symlink, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createCertAuthority } from "../harness/certs.js";
import { auditRootfs, ImageUser, RequiredTools, type AuditInput } from "../harness/node/image-audit.js";

async function put(root: string, rel: string, data: string | Buffer, mode = 0o644): Promise<void> {
  await mkdir(dirname(join(root, rel)), { recursive: true });
  await writeFile(join(root, rel), data);
  await chmod(join(root, rel), mode);
}

test("the image audit names every planted build-machine file and broken tool, and passes the clean rootfs", async (t) => {
  const work = await mkdtemp(join(tmpdir(), "basecache-audit-"));
  t.after(() => rm(work, { recursive: true, force: true }));
  // The "build machine": a CA bundle holding a proxy CA, and an npmrc naming it.
  await mkdir(join(work, "host"));
  const ca = await createCertAuthority(join(work, "host"));
  const proxyCa = await readFile(ca.certPath, "utf8");
  const bundle = join(work, "host", "ca-certificates.crt");
  await writeFile(bundle, `# other roots\n${proxyCa}`);
  const npmrc = join(work, "host", "npmrc");
  await writeFile(npmrc, `cafile=${bundle}\n`);
  const rootfs = join(work, "rootfs");
  for (const tool of RequiredTools) await put(rootfs, tool, "#!/bin/sh\n", 0o755);
  await put(rootfs, "etc/ssl/certs/ca-certificates.crt", "# the image's own roots, not the host's\n");
  await put(rootfs, "app/dist/main.js", "export {};\n");
  await mkdir(join(rootfs, "tmp"));
  await mkdir(join(rootfs, "run/secrets"), { recursive: true });
  const input: AuditInput = { rootfs, user: ImageUser, hostFiles: [bundle, npmrc], hostCaCerts: [proxyCa] };
  assert.deepEqual(await auditRootfs(input), [], "the clean rootfs passes");

  await copyFile(bundle, join(rootfs, "usr-local-bundle.crt"));
  await put(rootfs, "opt/app/config.json", JSON.stringify({ ca: proxyCa }));
  await put(rootfs, "root/.npmrc", "cafile=/run/secrets/build-ca\n");
  await put(rootfs, "root/.npm/_cacache/index-v5/00/aa", "{}");
  await put(rootfs, "app/.git/HEAD", "ref: refs/heads/main\n");
  await put(rootfs, "app/test/unit/x.test.ts", "");
  await put(rootfs, "tmp/build.npmrc", "cafile=/run/secrets/build-ca\n");
  await put(rootfs, "run/secrets/build-ca", proxyCa);
  await unlink(join(rootfs, "usr/bin/setpriv"));
  await chmod(join(rootfs, "usr/bin/prlimit"), 0o644);
  await unlink(join(rootfs, "usr/bin/qemu-img"));
  await symlink("../../../../usr/bin/qemu-img", join(rootfs, "usr/bin/qemu-img"));
  const findings = await auditRootfs({ ...input, user: "0:0" });

  const want: RegExp[] = [
    /^image user is "0:0", want 65532:65532$/,
    /^\/usr\/bin\/setpriv: missing$/,
    /^\/usr\/bin\/prlimit: not executable$/,
    /^\/usr\/bin\/qemu-img: symlink out of the rootfs/,
    /^\/usr-local-bundle\.crt: a copy of the build machine's .*ca-certificates\.crt$/,
    /^\/usr-local-bundle\.crt: holds a CA certificate of the build machine$/,
    /^\/opt\/app\/config\.json: holds a CA certificate of the build machine$/,
    /^\/run\/secrets\/build-ca: holds a CA certificate of the build machine$/,
    /^\/root\/\.npmrc: \.npmrc in the image$/,
    /^\/root\/\.npm: build-machine state in the image \(not empty\)$/,
    /^\/root\/\.npm\/_cacache: _cacache in the image$/,
    /^\/app\/\.git: \.git in the image$/,
    /^\/app\/\.git: build-machine state in the image/,
    /^\/app\/test: build-machine state in the image/,
    /^\/tmp: build-machine state in the image \(not empty\)$/,
    /^\/run\/secrets: build-machine state in the image \(not empty\)$/,
  ];
  for (const w of want) assert.ok(findings.some((f) => w.test(f)), `a finding matching ${String(w)} in:\n${findings.join("\n")}`);
  assert.equal(findings.length, want.length + 1, `one finding each (and /root/.npmrc by path too):\n${findings.join("\n")}`);
});
