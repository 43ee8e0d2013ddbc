/**
 * Audits an image's root filesystem: nothing of the build machine in it (its CA bundle or the proxy CA it
 * holds, an npmrc, an npm cache, a repo's .git or test dirs, build secrets, leftovers in /tmp), a numeric
 * non-root user, and the tools the agent runs (node, qemu-img, prlimit, setpriv). Walks with lstat and never
 * follows a symlink out of the rootfs. Each finding is one line naming the path.
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { lstat, readFile, readdir, readlink, stat } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join, posix } from "node:path";

/** What the rootfs is checked against. */
export interface AuditInput {
  /** The image's root filesystem, mounted or unpacked. */
  rootfs: string;
  /** The image config's User. */
  user: string;
  /** Files of the build machine that must not appear in the image by content (CA bundles, npmrc, resolv.conf). */
  hostFiles: string[];
  /** PEM certificates of the build machine (the proxy's CA) that must not appear in any file. */
  hostCaCerts: string[];
}

/** The user the manifests run as (runAsUser). */
export const ImageUser = "65532:65532";
/** Tools the agent runs, where the image must have them as executables. */
export const RequiredTools = ["usr/local/bin/node", "usr/bin/qemu-img", "usr/bin/prlimit", "usr/bin/setpriv"];
/** Paths (relative to the rootfs) of build-machine state by name: present and not empty is a finding. */
const ForbiddenPaths = ["root/.npm", "root/.npmrc", "root/.cache", "etc/npmrc", "usr/etc/npmrc", "usr/local/etc/npmrc", "run/secrets", "tmp", "app/test", "app/.git", "app/src", "app/node_modules/.cache"];
/** Names forbidden anywhere: a repo, an npm content cache, a user npmrc. */
const ForbiddenNames = new Set([".git", "_cacache", ".npmrc"]);
const MaxScanBytes = 512 * 1024 * 1024;

/** The build machine's files and proxy CAs that an audit here should look for. */
export async function hostInputs(): Promise<Pick<AuditInput, "hostFiles" | "hostCaCerts">> {
  const candidates = [process.env.NODE_EXTRA_CA_CERTS, "/etc/ssl/certs/ca-certificates.crt", join(homedir(), ".npmrc"), "/usr/etc/npmrc", "/etc/npmrc", "/etc/resolv.conf", "/etc/hostname"];
  const hostFiles = [...new Set(candidates.filter((p): p is string => !!p && existsSync(p)))];
  const localCaDir = "/usr/local/share/ca-certificates";
  const names = existsSync(localCaDir) ? await readdir(localCaDir, { recursive: true }) : [];
  const hostCaCerts = await Promise.all(names.filter((n) => n.endsWith(".crt")).map((n) => readFile(join(localCaDir, n), "utf8")));
  return { hostFiles, hostCaCerts };
}

/** The first base64 line of each PEM certificate in `pem`: present in any copy of that certificate. */
export function certMarkers(pem: string): string[] {
  return [...pem.matchAll(/-----BEGIN CERTIFICATE-----\r?\n([A-Za-z0-9+/=]{40,})/g)].map((m) => m[1] ?? "").filter((s) => s !== "");
}

/** Every finding of the audit; empty when the image passes. */
export async function auditRootfs(input: AuditInput): Promise<string[]> {
  const findings: string[] = [];
  if (input.user !== ImageUser) findings.push(`image user is ${JSON.stringify(input.user)}, want ${ImageUser}`);
  for (const tool of RequiredTools) {
    const why = await executableIn(input.rootfs, tool);
    if (why) findings.push(`/${tool}: ${why}`);
  }
  for (const p of ForbiddenPaths) {
    const full = join(input.rootfs, p);
    const st = await lstat(full).catch(() => null);
    if (!st) continue;
    if (!st.isDirectory()) findings.push(`/${p}: build-machine state in the image (${st.size} bytes)`);
    else if ((await readdir(full)).length > 0) findings.push(`/${p}: build-machine state in the image (not empty)`);
  }
  const byHash = new Map<string, string>();
  for (const f of input.hostFiles) {
    const data = await readFile(f);
    if (data.length > 0) byHash.set(sha256(data), f);
  }
  const sizes = new Set(await Promise.all([...byHash.values()].map(async (f) => (await stat(f)).size)));
  const markers = input.hostCaCerts.flatMap(certMarkers).map((m) => Buffer.from(m));
  await walk(input.rootfs, "", async (rel, size) => {
    const name = posix.basename(rel);
    if (ForbiddenNames.has(name)) findings.push(`/${rel}: ${name} in the image`);
    if (size === null || size > MaxScanBytes || (!sizes.has(size) && markers.length === 0)) return;
    const data = await readFile(join(input.rootfs, rel));
    const same = sizes.has(size) ? byHash.get(sha256(data)) : undefined;
    if (same) findings.push(`/${rel}: a copy of the build machine's ${same}`);
    if (markers.some((m) => data.includes(m))) findings.push(`/${rel}: holds a CA certificate of the build machine`);
  });
  return findings;
}

/** Calls `visit` for each entry under `dir` (relative path; size for regular files, else null). */
async function walk(rootfs: string, rel: string, visit: (rel: string, size: number | null) => Promise<void>): Promise<void> {
  for (const e of await readdir(join(rootfs, rel), { withFileTypes: true })) {
    const child = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) {
      await visit(child, null);
      if (!["proc", "sys", "dev"].includes(child)) await walk(rootfs, child, visit);
    } else if (e.isFile()) await visit(child, (await lstat(join(rootfs, child))).size);
    else await visit(child, null);
  }
}

/** Why `rel` is not an executable regular file in the rootfs (symlinks resolved inside it), or null. */
async function executableIn(rootfs: string, rel: string, depth = 0): Promise<string | null> {
  const st = await lstat(join(rootfs, rel)).catch(() => null);
  if (!st) return "missing";
  if (st.isSymbolicLink()) {
    if (depth > 8) return "too many symlinks";
    const target = await readlink(join(rootfs, rel));
    const next = target.startsWith("/") ? target.slice(1) : posix.normalize(posix.join(dirname(rel), target));
    return next.startsWith("..") ? `symlink out of the rootfs (${target})` : executableIn(rootfs, next, depth + 1);
  }
  if (!st.isFile()) return "not a regular file";
  return (st.mode & 0o111) === 0 ? "not executable" : null;
}

function sha256(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}
