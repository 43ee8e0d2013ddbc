/**
 * Real cosign signatures for the tests: the pinned cosign (built from its Go module by hack/build-tools.sh) makes
 * a key pair and signs images in a test registry by digest, the way a publisher does (`cosign sign --key`), with
 * no transparency log (nothing here reaches one). Each signer keeps its keys and cosign's home in a temp dir.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";

const repoRoot = resolve(fileURLToPath(new URL("../..", import.meta.url)));
let cosignPath: Promise<string> | undefined;

/** Builds cosign on first use (several minutes, progress on stderr) and returns its path. */
export function cosignBinary(): Promise<string> {
  cosignPath ??= (async () => {
    const { stdout } = await execa(resolve(repoRoot, "hack/build-tools.sh"), ["cosign"], { cwd: repoRoot, stdin: "ignore", stderr: "inherit" });
    return resolve(stdout.trim().split("\n").at(-1) ?? "", "cosign");
  })();
  return cosignPath;
}

export class CosignSigner {
  private constructor(
    private readonly dir: string,
    private readonly bin: string,
  ) {}

  /** A fresh ECDSA P-256 key pair made by `cosign generate-key-pair`. */
  static async create(): Promise<CosignSigner> {
    const dir = await mkdtemp(join(tmpdir(), "basecache-cosign-"));
    const signer = new CosignSigner(dir, await cosignBinary());
    await signer.run(["generate-key-pair", "--output-key-prefix", "cosign"]);
    return signer;
  }

  /** The PEM public key (cosign.pub). */
  publicKey(): Promise<string> {
    return readFile(join(this.dir, "cosign.pub"), "utf8");
  }

  /** Signs `host/repo@digest` in a plain-http registry and pushes the signature beside it (the `.sig` tag). */
  async sign(refByDigest: string): Promise<void> {
    if (!refByDigest.includes("@sha256:")) throw new Error(`cosign signs by digest, got ${refByDigest}`);
    await this.run(["sign", "--key", join(this.dir, "cosign.key"), "--tlog-upload=false", "--allow-http-registry", "--yes", refByDigest]);
  }

  async close(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }

  private async run(args: string[]): Promise<void> {
    // HOME keeps cosign's TUF cache and config out of the user's; the password protects the test key file.
    const res = await execa(this.bin, args, { cwd: this.dir, stdin: "ignore", reject: false, timeout: 60_000, env: { HOME: this.dir, COSIGN_PASSWORD: "basecache-test", COSIGN_EXPERIMENTAL: "0" }, extendEnv: false });
    if (res.exitCode !== 0) throw new Error(`cosign ${args[0]} exited ${String(res.exitCode)}: ${res.stderr}`);
  }
}
