/**
 * Checksums from the vendor through `basecache fetch --checksum-from`: a real HTTP origin serves the image beside
 * a SUMS file and its signature, made by real OpenPGP keys (gpg, in the test) and checked by real gpgv. A refused
 * SUMS file or signature stops the fetch before the image's first byte, and leaves nothing in the base dir.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { baseNameFor } from "../../src/core/names.js";
import { MaxSumsBytes } from "../../src/core/sums-file.js";
import { filesStartingWith, runFetch } from "../harness/fetch-cli.js";
import { TestSigner } from "../harness/gpg.js";
import { ImageDir } from "../harness/images.js";
import { Origin } from "../harness/origin.js";

let origin: Origin;
let images: ImageDir;
let work: string;
let vendor: TestSigner;
let stranger: TestSigner;
let keyring: string;
let binaryKeyring: string;
let qcow2: string;
let sha256: string;
let sha512: string;
let n = 0;

before(async () => {
  origin = await Origin.start();
  images = await ImageDir.create();
  work = await mkdtemp(join(tmpdir(), "basecache-sums-"));
  [vendor, stranger] = await Promise.all([TestSigner.create("Cloud Vendor <release@vendor.example>"), TestSigner.create("Someone Else <else@example>")]);
  keyring = join(work, "vendor.asc");
  binaryKeyring = join(work, "vendor.gpg");
  await writeFile(keyring, await vendor.publicKey(true));
  await writeFile(binaryKeyring, await vendor.publicKey(false));
  qcow2 = await images.qcow2("cloud.qcow2", 8);
  const bytes = await readFile(qcow2);
  sha256 = createHash("sha256").update(bytes).digest("hex");
  sha512 = createHash("sha512").update(bytes).digest("hex");
});

after(async () => {
  await origin.close();
  await images.cleanup();
  await Promise.all([vendor?.close(), stranger?.close()]);
  await rm(work, { recursive: true, force: true });
});

/** A fresh release directory on the origin: the image as `cloud.qcow2`; returns its path prefix and a base dir. */
async function release(): Promise<{ dir: string; baseDir: string; imageUrl: string; id: string }> {
  const dir = `/r${++n}`;
  const baseDir = await mkdtemp(join(work, "base-"));
  return { dir, baseDir, imageUrl: origin.serve(`${dir}/cloud.qcow2`, { file: qcow2 }), id: `vendor-${n}` };
}

function gnuSums(hex: string, name = "cloud.qcow2"): Buffer {
  return Buffer.from(`${"0".repeat(64)}  other.img\n${hex} *${name}\n`);
}

function bsdSums(hex: string, name = "cloud.qcow2", algo = "SHA256"): Buffer {
  return Buffer.from(`# ${name}: 123 bytes\n${algo} (${name}) = ${hex}\n${algo} (other.img) = ${"0".repeat(hex.length)}\n`);
}

async function assertNothingLeft(baseDir: string, id: string, imagePath: string): Promise<void> {
  assert.deepEqual(await filesStartingWith(baseDir, baseNameFor(id)), [], "no base, sidecar or work file");
  assert.equal(origin.seen.get(imagePath), undefined, "the image was never requested");
}

test("GNU SHA256SUMS with a binary detached signature by a supplied key: the base is ready, and its sidecar says where the checksum came from", async () => {
  const r = await release();
  const sums = gnuSums(sha256);
  const sumsUrl = origin.serve(`${r.dir}/SHA256SUMS`, sums);
  const sigUrl = origin.serve(`${r.dir}/SHA256SUMS.gpg`, await vendor.detachSign(sums));
  const f = await runFetch(["--base-dir", r.baseDir, "--id", r.id, "--url", r.imageUrl, "--checksum-from", sumsUrl, "--signature", sigUrl, "--keyring", keyring]);
  assert.equal(f.code, 0, f.json.message);
  assert.equal(f.json.status, "ready");
  assert.equal(f.json.sha256, sha256);
  const sidecar = JSON.parse(await readFile(join(r.baseDir, `${baseNameFor(r.id)}.info.json`), "utf8")) as { checksumFrom?: unknown };
  assert.deepEqual(sidecar.checksumFrom, { url: sumsUrl, name: "cloud.qcow2", signatureUrl: sigUrl, signedBy: vendor.fingerprint });
});

test("BSD lines with sha512 and an armored detached signature, keys given as a binary keyring: ready", async () => {
  const r = await release();
  const sums = bsdSums(sha512, "cloud.qcow2", "SHA512");
  const sumsUrl = origin.serve(`${r.dir}/SHA512SUMS`, sums);
  const sigUrl = origin.serve(`${r.dir}/SHA512SUMS.asc`, await vendor.detachSign(sums, true));
  const f = await runFetch(["--base-dir", r.baseDir, "--id", r.id, "--url", r.imageUrl, "--checksum-from", sumsUrl, "--signature", sigUrl, "--keyring", binaryKeyring]);
  assert.equal(f.code, 0, f.json.message);
});

test("Fedora's clearsigned CHECKSUM: ready, and only the signed text counts, not lines around it", async () => {
  const r = await release();
  const signed = await vendor.clearSign(bsdSums(sha256));
  const sumsUrl = origin.serve(`${r.dir}/CHECKSUM`, signed);
  const f = await runFetch(["--base-dir", r.baseDir, "--id", r.id, "--url", r.imageUrl, "--checksum-from", sumsUrl, "--keyring", keyring]);
  assert.equal(f.code, 0, f.json.message);

  // An attacker who cannot sign adds the image's line outside the signed block: it is not read.
  const r2 = await release();
  const forged = Buffer.concat([Buffer.from(`SHA256 (cloud.qcow2) = ${sha256}\n`), await vendor.clearSign(bsdSums(sha256, "another.qcow2")), Buffer.from(`SHA256 (cloud.qcow2) = ${sha256}\n`)]);
  const forgedUrl = origin.serve(`${r2.dir}/CHECKSUM`, forged);
  const g = await runFetch(["--base-dir", r2.baseDir, "--id", r2.id, "--url", r2.imageUrl, "--checksum-from", forgedUrl, "--keyring", keyring]);
  assert.equal(g.code, 3, g.json.message);
  assert.equal(g.json.reason, "checksum-not-listed");
  await assertNothingLeft(r2.baseDir, r2.id, `${r2.dir}/cloud.qcow2`);

  // Nor a second signed block, by a key not supplied, after the vendor's: one signed message per file.
  const r3 = await release();
  const appended = Buffer.concat([await vendor.clearSign(bsdSums(sha256, "another.qcow2")), await stranger.clearSign(bsdSums(sha256))]);
  const h = await runFetch(["--base-dir", r3.baseDir, "--id", r3.id, "--url", r3.imageUrl, "--checksum-from", origin.serve(`${r3.dir}/CHECKSUM`, appended), "--keyring", keyring]);
  assert.equal(h.code, 3, h.json.message);
  assert.equal(h.json.reason, "signature-invalid");
  await assertNothingLeft(r3.baseDir, r3.id, `${r3.dir}/cloud.qcow2`);
});

test("a SUMS file changed after it was signed is refused as signature-invalid, before the image is fetched", async () => {
  const r = await release();
  const sig = await vendor.detachSign(gnuSums("1".repeat(64)));
  const sumsUrl = origin.serve(`${r.dir}/SHA256SUMS`, gnuSums(sha256));
  const sigUrl = origin.serve(`${r.dir}/SHA256SUMS.gpg`, sig);
  const f = await runFetch(["--base-dir", r.baseDir, "--id", r.id, "--url", r.imageUrl, "--checksum-from", sumsUrl, "--signature", sigUrl, "--keyring", keyring]);
  assert.equal(f.code, 3, f.json.message);
  assert.equal(f.json.reason, "signature-invalid");
  assert.match(f.json.message, new RegExp(`Refused image "${r.id}": .*${sumsUrl.replace(/[.?]/g, "\\$&")}`));
  await assertNothingLeft(r.baseDir, r.id, `${r.dir}/cloud.qcow2`);
});

test("a clearsigned CHECKSUM changed after signing is refused as signature-invalid", async () => {
  const r = await release();
  const signed = (await vendor.clearSign(bsdSums("1".repeat(64)))).toString("utf8").replace("1".repeat(64), sha256);
  const sumsUrl = origin.serve(`${r.dir}/CHECKSUM`, Buffer.from(signed));
  const f = await runFetch(["--base-dir", r.baseDir, "--id", r.id, "--url", r.imageUrl, "--checksum-from", sumsUrl, "--keyring", keyring]);
  assert.equal(f.code, 3, f.json.message);
  assert.equal(f.json.reason, "signature-invalid");
  await assertNothingLeft(r.baseDir, r.id, `${r.dir}/cloud.qcow2`);
});

test("a signature by a key that was not supplied is refused as signature-unknown-key", async () => {
  const r = await release();
  const sums = gnuSums(sha256);
  const sumsUrl = origin.serve(`${r.dir}/SHA256SUMS`, sums);
  const sigUrl = origin.serve(`${r.dir}/SHA256SUMS.gpg`, await stranger.detachSign(sums));
  const f = await runFetch(["--base-dir", r.baseDir, "--id", r.id, "--url", r.imageUrl, "--checksum-from", sumsUrl, "--signature", sigUrl, "--keyring", keyring]);
  assert.equal(f.code, 3, f.json.message);
  assert.equal(f.json.reason, "signature-unknown-key");
  await assertNothingLeft(r.baseDir, r.id, `${r.dir}/cloud.qcow2`);
});

test("a signature by an expired key, and by a revoked key, each has its own reason", async () => {
  const expired = await TestSigner.create("Old Vendor <old@example>", { expire: "1d", at: "20200101T000000" });
  const revoked = await TestSigner.create("Revoked Vendor <revoked@example>");
  try {
    for (const [signer, reason] of [[expired, "signature-key-expired"], [revoked, "signature-key-revoked"]] as const) {
      const r = await release();
      const sums = gnuSums(sha256);
      const sig = await signer.detachSign(sums);
      if (signer === revoked) await revoked.revoke();
      const keys = join(work, `keys-${n}.asc`);
      await writeFile(keys, await signer.publicKey());
      const sumsUrl = origin.serve(`${r.dir}/SHA256SUMS`, sums);
      const sigUrl = origin.serve(`${r.dir}/SHA256SUMS.gpg`, sig);
      const f = await runFetch(["--base-dir", r.baseDir, "--id", r.id, "--url", r.imageUrl, "--checksum-from", sumsUrl, "--signature", sigUrl, "--keyring", keys]);
      assert.equal(f.code, 3, f.json.message);
      assert.equal(f.json.reason, reason);
      await assertNothingLeft(r.baseDir, r.id, `${r.dir}/cloud.qcow2`);
    }
  } finally {
    await Promise.all([expired.close(), revoked.close()]);
  }
});

test("a signed SUMS file that does not list the image is refused as checksum-not-listed", async () => {
  const r = await release();
  const sums = gnuSums(sha256, "cloud-arm64.qcow2");
  const sumsUrl = origin.serve(`${r.dir}/SHA256SUMS`, sums);
  const sigUrl = origin.serve(`${r.dir}/SHA256SUMS.gpg`, await vendor.detachSign(sums));
  const f = await runFetch(["--base-dir", r.baseDir, "--id", r.id, "--url", r.imageUrl, "--checksum-from", sumsUrl, "--signature", sigUrl, "--keyring", keyring]);
  assert.equal(f.code, 3, f.json.message);
  assert.equal(f.json.reason, "checksum-not-listed");
  assert.match(f.json.message, /"cloud\.qcow2"/);
  await assertNothingLeft(r.baseDir, r.id, `${r.dir}/cloud.qcow2`);

  // --checksum-name looks it up under the name the vendor used.
  const g = await runFetch(["--base-dir", r.baseDir, "--id", r.id, "--url", r.imageUrl, "--checksum-from", sumsUrl, "--checksum-name", "./cloud-arm64.qcow2", "--signature", sigUrl, "--keyring", keyring]);
  assert.equal(g.code, 0, g.json.message);
});

test("an unsigned SUMS file: its checksum is the image's, and the download must match it (checksum-mismatch)", async () => {
  const r = await release();
  const ok = await runFetch(["--base-dir", r.baseDir, "--id", r.id, "--url", r.imageUrl, "--checksum-from", origin.serve(`${r.dir}/SHA256SUMS`, bsdSums(sha256))]);
  assert.equal(ok.code, 0, ok.json.message);

  const w = await release();
  const f = await runFetch(["--base-dir", w.baseDir, "--id", w.id, "--url", w.imageUrl, "--checksum-from", origin.serve(`${w.dir}/SHA256SUMS`, gnuSums("2".repeat(64)))]);
  assert.equal(f.code, 3, f.json.message);
  assert.equal(f.json.reason, "checksum-mismatch");
  assert.deepEqual(await filesStartingWith(w.baseDir, baseNameFor(w.id)), []);
});

test("a SUMS file that is an error page, or larger than 1 MiB, is refused with its own reason", async () => {
  const r = await release();
  const page = await runFetch(["--base-dir", r.baseDir, "--id", r.id, "--url", r.imageUrl, "--checksum-from", origin.route(`${r.dir}/SHA256SUMS`, { kind: "html" })]);
  assert.equal(page.code, 3, page.json.message);
  assert.equal(page.json.reason, "sums-malformed");
  const big = Buffer.concat([gnuSums(sha256), Buffer.alloc(MaxSumsBytes, "#")]);
  const huge = await runFetch(["--base-dir", r.baseDir, "--id", r.id, "--url", r.imageUrl, "--checksum-from", origin.serve(`${r.dir}/BIGSUMS`, big)]);
  assert.equal(huge.code, 3, huge.json.message);
  assert.equal(huge.json.reason, "sums-too-large");
  await assertNothingLeft(r.baseDir, r.id, `${r.dir}/cloud.qcow2`);
});

test("a SUMS file the origin cannot serve is a source failure (exit 4), not a refusal", async () => {
  const r = await release();
  const f = await runFetch(["--base-dir", r.baseDir, "--id", r.id, "--url", r.imageUrl, "--checksum-from", origin.route(`${r.dir}/SHA256SUMS`, { kind: "status", code: 404 })]);
  assert.equal(f.code, 4, f.json.message);
  assert.equal(f.json.reason, "http-status");
});

test("a password in the SUMS and signature URLs reaches the origin, and no log line, sidecar or message holds it", async () => {
  const r = await release();
  const sums = gnuSums(sha256);
  const withPassword = (u: string) => Object.assign(new URL(u), { username: "alice", password: "hunter2" }).href;
  const sumsUrl = withPassword(origin.serve(`${r.dir}/SHA256SUMS`, sums));
  const sigUrl = withPassword(origin.serve(`${r.dir}/SHA256SUMS.gpg`, await vendor.detachSign(sums)));
  const f = await runFetch(["--base-dir", r.baseDir, "--id", r.id, "--url", r.imageUrl, "--checksum-from", sumsUrl, "--signature", sigUrl, "--keyring", keyring], { BASECACHE_LOG_LEVEL: "debug" });
  assert.equal(f.code, 0, f.json.message);
  assert.equal(origin.seen.get(`${r.dir}/SHA256SUMS`)?.[0]?.authorization, `Basic ${Buffer.from("alice:hunter2").toString("base64")}`);
  const sidecar = await readFile(join(r.baseDir, `${baseNameFor(r.id)}.info.json`), "utf8");
  for (const [where, text] of [["the log", f.stderr], ["--json", JSON.stringify(f.json)], ["the sidecar", sidecar]]) assert.doesNotMatch(text ?? "", /hunter2/, where);
  assert.match(f.stderr, /Verified signature of checksum file/);

  // A refusal's message names the URL, without the password.
  const w = await release();
  const bad = withPassword(origin.serve(`${w.dir}/SHA256SUMS`, gnuSums(sha256, "elsewhere.img")));
  const g = await runFetch(["--base-dir", w.baseDir, "--id", w.id, "--url", w.imageUrl, "--checksum-from", bad]);
  assert.equal(g.json.reason, "checksum-not-listed");
  assert.match(g.json.message, /SHA256SUMS/);
  assert.doesNotMatch(g.json.message + g.stderr, /hunter2/);
});
