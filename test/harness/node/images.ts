/**
 * The basecache container image, built for real by hack/build-image.sh (buildah, the Containerfile, the
 * stand-in base from hack/image/build-base.sh) and cached as OCI archives in ~/.cache/basecache/images.
 * The real-node harness pushes `archive` into its local registry under `name`.
 */
import { execa } from "execa";
import { existsSync } from "node:fs";
import { delimiter, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../../../", import.meta.url));

/** An image as an OCI archive and the name it carries (e.g. localhost/basecache:0.1.0). */
export interface ImageArchive {
  archive: string;
  name: string;
}

/** The app image and the base it was built on (`base.archive` null for a pulled public base). */
export interface AgentImage extends ImageArchive {
  base: { archive: string | null; name: string };
}

/** Why the image cannot be built on this machine, or null when it can. */
export function imageBuildUnavailable(): string | null {
  if (process.getuid?.() !== 0) return "not root (buildah, podman and debootstrap need root here)";
  const missing = ["buildah", "podman", "debootstrap"].filter((t) => !onPath(t));
  return missing.length ? `${missing.join(", ")} not on PATH (apt-get install ${missing.join(" ")})` : null;
}

function onPath(tool: string): boolean {
  const dirs = (process.env.PATH ?? "").split(delimiter).concat("/usr/sbin", "/sbin");
  return dirs.some((d) => d !== "" && existsSync(join(d, tool)));
}

/** Builds the image (and its base) unless their archives are cached; 20 minutes at most. */
export async function ensureAgentImage(): Promise<AgentImage> {
  const r = await execa(join(root, "hack/build-image.sh"), [], { cwd: root, reject: false, timeout: 20 * 60_000, stderr: "pipe" });
  if (r.exitCode !== 0) {
    throw new Error(`hack/build-image.sh failed (exit ${r.exitCode ?? "none"}${r.timedOut ? ", timed out after 20 min" : ""}): ${r.stderr.split("\n").slice(-5).join(" | ")}`);
  }
  return parseBuildOutput(r.stdout);
}

/** Parses the "base <archive|-> <name>" and "app <archive> <name>" lines of hack/build-image.sh. */
export function parseBuildOutput(stdout: string): AgentImage {
  const lines = new Map(
    stdout
      .split("\n")
      .map((l) => l.trim().split(/\s+/))
      .filter((f) => f.length === 3)
      .map(([kind = "", archive = "", name = ""]) => [kind, { archive, name }] as const),
  );
  const app = lines.get("app");
  const base = lines.get("base");
  if (!app || !base) throw new Error(`hack/build-image.sh printed no "base" and "app" lines: ${JSON.stringify(stdout)}`);
  return { ...app, base: { archive: base.archive === "-" ? null : base.archive, name: base.name } };
}
