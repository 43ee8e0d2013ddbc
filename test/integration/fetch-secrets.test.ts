/**
 * No credentials at rest or in logs: a URL's password and signed query reach the origin, but never the sidecar,
 * the log, `--json` or an error message; the sidecar is not world-readable, the base is (VM pods read it).
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { baseNameFor } from "../../src/core/names.js";
import { Origin } from "../harness/origin.js";
import { ImageDir } from "../harness/images.js";
import { runFetch } from "../harness/fetch-cli.js";

let origin: Origin;
let images: ImageDir;
let baseDir: string;
let raw: string;
const Secrets = ["hunter2", "sigsecret", "toksecret", "redirsecret"];
const LogEverything = { BASECACHE_LOG_LEVEL: "debug" };

before(async () => {
  origin = await Origin.start();
  images = await ImageDir.create();
  baseDir = await mkdtemp(join(tmpdir(), "basecache-secrets-"));
  raw = await images.raw("disk.raw", 4);
});

after(async () => {
  await origin.close();
  await images.cleanup();
  await rm(baseDir, { recursive: true, force: true });
});

/** The URL of `path` with a password and signed query parameters in it. */
function secretUrl(path: string): string {
  const u = new URL(origin.url(path));
  u.username = "alice";
  u.password = "hunter2";
  u.search = "X-Amz-Signature=sigsecret&token=toksecret&page=1";
  return u.href;
}

function assertNoSecret(where: string, text: string): void {
  for (const s of Secrets) assert.ok(!text.includes(s), `${where} holds "${s}": ${text}`);
}

test("a password and signature in the URL reach the origin, and nothing we write or print holds them", async () => {
  origin.serve("/private.raw", { file: raw });
  const r = await runFetch(["--base-dir", baseDir, "--id", "private", "--url", secretUrl("/private.raw")], LogEverything);
  assert.equal(r.code, 0, r.json.message);
  const auth = origin.seen.get("/private.raw")?.[0]?.authorization;
  assert.equal(auth, `Basic ${Buffer.from("alice:hunter2").toString("base64")}`, "the URL is fetched as given");
  assertNoSecret("stderr (the log)", r.stderr);
  assertNoSecret("--json", JSON.stringify(r.json));
  const base = baseNameFor("private");
  for (const name of await readdir(baseDir)) if (name.startsWith(base)) assertNoSecret(name, (await readFile(join(baseDir, name))).toString("latin1"));
  const sidecar = JSON.parse(await readFile(join(baseDir, `${base}.info.json`), "utf8")) as { source: string; finalUrl: string };
  assert.equal(sidecar.source, origin.url("/private.raw") + "?X-Amz-Signature=REDACTED&token=REDACTED&page=1");
  assert.equal(sidecar.finalUrl, sidecar.source);
  assert.equal((await stat(join(baseDir, `${base}.info.json`))).mode & 0o007, 0, "the sidecar is not world-readable");
  assert.equal((await stat(join(baseDir, base))).mode & 0o777, 0o644, "the base is readable by the VMs' user");
});

test("a failed fetch names the URL without its password or signature", async () => {
  origin.route("/missing.raw", { kind: "status", code: 404 });
  const r = await runFetch(["--base-dir", baseDir, "--id", "missing", "--url", secretUrl("/missing.raw")], LogEverything);
  assert.equal(r.code, 4, r.json.message);
  assert.match(r.json.message, /127\.0\.0\.1/);
  assertNoSecret("the message", r.json.message);
  assertNoSecret("stderr (the log)", r.stderr);
  const refused = await runFetch(["--base-dir", baseDir, "--id", "unreachable", "--url", "http://alice:hunter2@127.0.0.1:1/x?sig=sigsecret"], LogEverything);
  assert.equal(refused.code, 4, refused.json.message);
  assertNoSecret("the message", refused.json.message);
  assertNoSecret("stderr (the log)", refused.stderr);
});

test("a redirect to a signed URL is recorded redacted as the final URL", async () => {
  origin.serve("/signed.raw", { file: raw });
  const to = `${origin.url("/signed.raw")}?sig=redirsecret&se=2026-12-03`;
  const url = origin.route("/go.raw", { kind: "redirect", to });
  const r = await runFetch(["--base-dir", baseDir, "--id", "redirected", "--url", url], LogEverything);
  assert.equal(r.code, 0, r.json.message);
  const text = await readFile(join(baseDir, `${baseNameFor("redirected")}.info.json`), "utf8");
  assertNoSecret("the sidecar", text);
  assert.equal((JSON.parse(text) as { finalUrl: string }).finalUrl, `${origin.url("/signed.raw")}?sig=REDACTED&se=2026-12-03`);
  assertNoSecret("stderr (the log)", r.stderr);
});
