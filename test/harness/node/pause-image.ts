/**
 * The pod sandbox ("pause") image of the test node: hack/image/pause.c built static with gcc, in an image
 * FROM scratch made with buildah, as an OCI archive cached in ~/.cache/basecache/images/ under the hash of
 * its source and recipe. The node pulls it from its local registry, never from the internet.
 */
import { createHash } from "node:crypto";
import { access, mkdir, mkdtemp, readFile, rename, rm } from "node:fs/promises";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import type { OciImage } from "./oci-archive.js";

const repoRoot = resolve(fileURLToPath(new URL("../../..", import.meta.url)));
const source = join(repoRoot, "hack/image/pause.c");
// Bump when the steps below change, so that a cached archive of the old recipe is not reused.
const Recipe = "pause-1: gcc -static -O2 -s; scratch; USER 65535:65535; ENTRYPOINT /pause";

/** Where built images are cached: $BASECACHE_IMAGES_CACHE, or ~/.cache/basecache/images. */
export function imagesCacheDir(): string {
  const cache = process.env["XDG_CACHE_HOME"] ?? join(homedir(), ".cache");
  return process.env["BASECACHE_IMAGES_CACHE"] ?? join(cache, "basecache/images");
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/** Builds the pause image unless cached; resolves its archive and the name (`repo:tag`) to push it as. */
export async function ensurePauseImage(log: (line: string) => void = () => {}): Promise<OciImage> {
  const hash = createHash("sha256").update(Recipe).update("\0").update(await readFile(source)).digest("hex").slice(0, 12);
  const name = `basecache/pause:${hash}`;
  const dir = imagesCacheDir();
  const archive = join(dir, `pause-${hash}.oci.tar`);
  if (await exists(archive)) return { archive, name };
  await mkdir(dir, { recursive: true });
  const work = await mkdtemp(join(dir, ".pause-"));
  try {
    log(`building the pause image ${name} into ${archive}`);
    const bin = join(work, "pause");
    await execa("gcc", ["-static", "-O2", "-s", "-Wall", "-Werror", "-o", bin, source], { stdin: "ignore" });
    const { stdout } = await execa(bin, ["-v"], { stdin: "ignore", timeout: 10_000 });
    if (stdout.trim() !== "basecache-pause") throw new Error(`Cannot build the pause image: ${bin} -v printed "${stdout}"`);
    await buildahScratch(work, bin, `oci-archive:${join(work, "image.tar")}:${name}`);
    // Atomic: a concurrent caller sees either no archive or a whole one.
    await rename(join(work, "image.tar"), archive);
    return { archive, name };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

// A private buildah store (vfs: plain directories, no mounts) that goes away with `work`, so nothing is
// left in the host's /var/lib/containers and no other user of buildah on the machine is disturbed.
async function buildahScratch(work: string, bin: string, dest: string): Promise<void> {
  const global = ["--root", join(work, "storage"), "--runroot", join(work, "run"), "--storage-driver", "vfs"];
  const buildah = (args: string[]) => execa("buildah", [...global, ...args], { stdin: "ignore", timeout: 120_000, env: { BUILDAH_ISOLATION: "chroot" } });
  const { stdout: ctr } = await buildah(["from", "--pull=false", "scratch"]);
  try {
    await buildah(["copy", "--chmod", "0755", ctr.trim(), bin, "/pause"]);
    await buildah(["config", "--entrypoint", '["/pause"]', "--cmd", "", "--user", "65535:65535", "--label", "org.opencontainers.image.title=basecache test node pause", ctr.trim()]);
    await buildah(["commit", "--format", "oci", "--rm", ctr.trim(), dest]);
  } catch (err) {
    await buildah(["rm", ctr.trim()]).catch(() => {});
    throw err;
  }
}
