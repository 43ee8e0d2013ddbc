/**
 * A vendor's signing key for tests: a real OpenPGP key made with `gpg --batch --quick-gen-key` (package gnupg,
 * test-only) in a temp GNUPGHOME, and real detached (binary and armored) and clearsigned signatures made with
 * it. `close` stops the gpg-agent that gpg started for the home and removes it.
 */
import { execa } from "execa";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

export class TestSigner {
  private constructor(
    private readonly home: string,
    /** The key's fingerprint (40 hex digits, upper case, as gpg prints it). */
    readonly fingerprint: string,
    private readonly time: string[],
  ) {}

  /**
   * Makes a new ed25519 signing key for `uid`, valid for `expire` (gpg's syntax: `never`, `1d`). With `at`
   * (`20200101T000000`), the key is made and signs at that time (gpg --faked-system-time): a key made in 2020
   * that expired a day later is expired now, without waiting for anything.
   */
  static async create(uid: string, opts: { expire?: string; at?: string } = {}): Promise<TestSigner> {
    const home = await mkdtemp(join(tmpdir(), "bc-gpg-"));
    const time = opts.at ? ["--faked-system-time", opts.at] : [];
    try {
      await gpg(home, [...time, "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", opts.expire ?? "never"]);
      const list = await gpg(home, ["--with-colons", "--list-keys", uid]);
      const fpr = /^fpr:+([0-9A-F]{40}):/m.exec(list)?.[1];
      if (!fpr) throw new Error(`gpg made no key for "${uid}": ${list}`);
      return new TestSigner(home, fpr, time);
    } catch (e) {
      await stopAgent(home);
      await rm(home, { recursive: true, force: true });
      throw e;
    }
  }

  /** The public key, armored (what a user puts in a ConfigMap) or binary. */
  async publicKey(armor = true): Promise<Buffer> {
    const r = await execa("gpg", ["--homedir", this.home, "--batch", ...(armor ? ["--armor"] : []), "--export", this.fingerprint], { encoding: "buffer" });
    return Buffer.from(r.stdout);
  }

  /** A detached signature of `data`: binary (SHA256SUMS.gpg) or armored (.asc). */
  async detachSign(data: Buffer, armor = false): Promise<Buffer> {
    return this.sign(data, [armor ? "--armor" : "--no-armor", "--detach-sign"]);
  }

  /** `data` clearsigned, as Fedora's CHECKSUM is. */
  async clearSign(data: Buffer): Promise<Buffer> {
    return this.sign(data, ["--clearsign"]);
  }

  private async sign(data: Buffer, how: string[]): Promise<Buffer> {
    const input = join(this.home, "in");
    const output = join(this.home, "out");
    await writeFile(input, data);
    await rm(output, { force: true });
    await gpg(this.home, [...this.time, "--local-user", this.fingerprint, ...how, "--output", output, input]);
    return readFile(output);
  }

  /** Revokes the key with the revocation certificate gpg stored when it made the key (signatures made before stay). */
  async revoke(): Promise<void> {
    const cert = await readFile(join(this.home, "openpgp-revocs.d", `${this.fingerprint}.rev`), "utf8");
    // gpg stores the certificate with its armor line escaped by a colon, so that it is not imported by mistake.
    const path = join(this.home, "revoke.asc");
    await writeFile(path, cert.replace(/^:-----BEGIN/m, "-----BEGIN"));
    await gpg(this.home, ["--import", path]);
  }

  async close(): Promise<void> {
    await stopAgent(this.home);
    await rm(this.home, { recursive: true, force: true });
  }
}

async function gpg(home: string, args: string[]): Promise<string> {
  const r = await execa("gpg", ["--homedir", home, "--batch", "--pinentry-mode", "loopback", "--yes", ...args], { reject: false, env: { LC_ALL: "C" } });
  if (r.exitCode !== 0) throw new Error(`gpg ${args.join(" ")} exited ${r.exitCode}: ${r.stderr}`);
  return r.stdout;
}

async function stopAgent(home: string): Promise<void> {
  await execa("gpgconf", ["--homedir", home, "--kill", "all"], { reject: false });
}
