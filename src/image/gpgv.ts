/**
 * Runs Debian's gpgv on a SUMS file and its signature, the way qemu-img runs: a child process under prlimit (CPU
 * and address space), a wall-clock bound, setpriv's parent-death signal, no stdin, C locale. Each run gets a
 * private 0700 temp dir holding its GNUPGHOME and a binary keyring made of only the keys the user supplied, so
 * no key of the host, the agent's home or an earlier run is ever trusted. The verdict is made from the
 * `--status-fd` lines (core/signature-status.ts); for a clearsigned file, the text used is what gpgv wrote with
 * `--output`, the part the signature covers, never the file around it.
 */
import { execa } from "execa";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dearmorPublicKeys, isArmored } from "../core/openpgp-armor.js";
import { MaxSumsBytes } from "../core/sums-file.js";
import { AbortedError, ToolError } from "../lib/errors.js";
import type { ToolLimits } from "./qemu-img.js";

/** gpgv's limits: verifying a 1 MiB file needs a fraction of a second and a few MiB. */
export const GpgvLimits: ToolLimits = { addressSpaceBytes: 512 * 1024 ** 2, cpuSeconds: 10 };

/** gpgv's wall-clock bound. */
export const GpgvTimeoutMs = 30_000;

const hasSetpriv = existsSync("/usr/bin/setpriv");

/** What gpgv is asked to check. */
export interface GpgvInput {
  /** The user's public keys as one binary keyring (binaryKeyring). */
  keyring: Uint8Array;
  /** The SUMS file as fetched. */
  signed: Uint8Array;
  /** A detached signature (binary or armored); absent for a clearsigned file. */
  detached?: Uint8Array;
  signal?: AbortSignal;
}

/** What gpgv said: its status lines, and for a clearsigned file the text its signature covers. */
export interface GpgvResult {
  statusLines: string[];
  /** The verified text (gpgv --output) of a clearsigned file; absent for a detached signature. */
  verified?: Buffer;
}

/**
 * The keys as one binary keyring (armored blocks decoded and concatenated; a binary keyring as it is).
 * @throws RangeError when armored text holds no public key block
 */
export function binaryKeyring(keys: Uint8Array): Buffer {
  if (!isArmored(keys[0])) return Buffer.from(keys);
  return Buffer.concat(dearmorPublicKeys(Buffer.from(keys).toString("utf8")).map((b64) => Buffer.from(b64, "base64")));
}

/**
 * Runs gpgv once in a private temp dir and returns what it said, whatever its exit code; the caller decides.
 * @throws ToolError when gpgv cannot run, is killed or times out; the signal's reason when aborted
 */
export async function runGpgv(input: GpgvInput): Promise<GpgvResult> {
  const dir = await mkdtemp(join(tmpdir(), "basecache-gpgv-"));
  try {
    const home = join(dir, "home");
    const keyring = join(dir, "keyring.gpg");
    const signed = join(dir, "sums");
    const out = join(dir, "verified");
    await mkdir(home, { mode: 0o700 });
    await writeFile(keyring, input.keyring, { mode: 0o600 });
    await writeFile(signed, input.signed, { mode: 0o600 });
    const files = [signed];
    if (input.detached) {
      await writeFile(join(dir, "sums.sig"), input.detached, { mode: 0o600 });
      files.unshift(join(dir, "sums.sig"));
    }
    // NOTE: --ignore-time-conflict: a node whose clock is behind would otherwise find a freshly made key or
    // signature "in the future" and refuse the vendor's file; expiry and revocation are still checked.
    const args = ["--homedir", home, "--keyring", keyring, "--status-fd", "1", "--ignore-time-conflict", ...(input.detached ? [] : ["--output", out]), "--", ...files];
    const r = await run(args, input.signal);
    const statusLines = r.split("\n").filter((l) => l.startsWith("[GNUPG:] "));
    if (input.detached) return { statusLines };
    const verified = existsSync(out) ? await readFile(out) : undefined;
    // gpgv writes the text before it checks the signature: it is the verified text only with a good verdict,
    // and the caller reads it only then. Larger than the file it came from it cannot be.
    return { statusLines, ...(verified && verified.length <= MaxSumsBytes ? { verified } : {}) };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function run(args: string[], signal?: AbortSignal): Promise<string> {
  const l = GpgvLimits;
  const [file = "gpgv", ...argv] = [...(hasSetpriv ? ["setpriv", "--pdeathsig", "KILL", "--"] : []), "prlimit", `--as=${l.addressSpaceBytes}`, `--cpu=${l.cpuSeconds}`, "--", "gpgv", ...args];
  const r = await execa(file, argv, {
    reject: false,
    encoding: "utf8",
    cancelSignal: signal,
    forceKillAfterDelay: 2000,
    timeout: GpgvTimeoutMs,
    maxBuffer: 1024 * 1024,
    env: { LC_ALL: "C" },
    extendEnv: false,
    stdin: "ignore",
  });
  if (r.isCanceled) throw signal?.reason instanceof Error ? signal.reason : new AbortedError("Cannot run gpgv: aborted");
  // Exit codes 0 (all good) and 1/2 (some signature not good, or a key missing) still carry status lines to decide on.
  if (r.timedOut || r.signal || r.exitCode === undefined || r.exitCode > 2) {
    const tail = r.stderr.slice(-2048).trim();
    const what = r.timedOut ? `timed out after ${GpgvTimeoutMs} ms` : r.signal ? `was killed by ${r.signal}` : `exited ${r.exitCode ?? "?"}`;
    throw new ToolError(`Cannot run gpgv: gpgv ${what}${tail ? `: ${tail.split("\n").pop() ?? ""}` : ""}`, { tool: "gpgv", exitCode: r.exitCode, signal: r.signal, timedOut: r.timedOut, stderrTail: tail });
  }
  return r.stdout;
}
