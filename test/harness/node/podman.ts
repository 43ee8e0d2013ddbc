/**
 * Runs the built image with podman the way the manifests run it: read-only root, user 65532, no capabilities,
 * no new privileges. The explicit ulimits are needed on machines without CAP_SYS_RESOURCE (podman cannot
 * raise its defaults there; see docs/image.md).
 */
import { execa } from "execa";
import { randomBytes } from "node:crypto";

/** The least-privilege flags every run here uses. */
export const RestrictedRunFlags = [
  "--read-only",
  "--user", "65532:65532",
  "--cap-drop", "ALL",
  "--security-opt", "no-new-privileges",
  "--ulimit", "nofile=16384:16384",
  "--ulimit", "nproc=4096:4096",
];

export interface RunOptions {
  entrypoint?: string;
  /** host:container[:opts] bind mounts. */
  volumes?: string[];
  /** "host" to reach an origin on 127.0.0.1; default none. */
  network?: "host" | "none";
  timeoutMs?: number;
}

/** Loads an OCI archive into podman's store under the name it carries. */
export async function loadArchive(archive: string): Promise<void> {
  await execa("podman", ["load", "--quiet", "-i", archive], { timeout: 5 * 60_000 });
}

/** Runs `image args` restricted; removes the container, also when the run times out. */
export async function runRestricted(image: string, args: string[], o: RunOptions = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const name = `basecache-image-test-${randomBytes(4).toString("hex")}`;
  const flags = [
    "run", "--rm", "--name", name, "--pull=never", ...RestrictedRunFlags,
    "--network", o.network ?? "none",
    ...(o.entrypoint ? ["--entrypoint", o.entrypoint] : []),
    ...(o.volumes ?? []).flatMap((v) => ["--volume", v]),
    image, ...args,
  ];
  const r = await execa("podman", flags, { reject: false, timeout: o.timeoutMs ?? 120_000, stdin: "ignore" });
  if (r.timedOut) await execa("podman", ["rm", "--force", "--time", "0", name], { reject: false });
  return { code: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** The image's config User, as podman reads it. */
export async function imageUser(image: string): Promise<string> {
  return (await execa("podman", ["image", "inspect", "--format", "{{.Config.User}}", image])).stdout.trim();
}

/** Mounts the image's rootfs (read-only use), runs `fn` on its path, unmounts. */
export async function withImageRootfs<T>(image: string, fn: (rootfs: string) => Promise<T>): Promise<T> {
  const rootfs = (await execa("podman", ["image", "mount", image])).stdout.trim();
  try {
    return await fn(rootfs);
  } finally {
    await execa("podman", ["image", "unmount", image], { reject: false });
  }
}
