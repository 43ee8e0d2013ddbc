import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execa } from "execa";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdtemp, readFile, readdir, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { baseNameFor, classifyBaseFileName } from "../../src/core/names.js";
import { requestKey } from "../../src/core/request-key.js";
import { Origin } from "../harness/origin.js";
import { ImageDir } from "../harness/images.js";
import { runFetch, startCli } from "../harness/fetch-cli.js";
import { eventually } from "../harness/eventually.js";

const MiB = 1024 * 1024;
let origin: Origin;
let images: ImageDir;
let baseDir: string;
/** Random data, a 96 MiB hole, random data: a kill inside the hole checks that holes count as written zeros. */
let image: string;
let imageSize: number;
let imageSha: string;
/** The same size, other bytes: the origin's file "changed" between two runs. */
let changed: string;
let changedSha: string;

async function sha256Of(path: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest("hex");
}

async function makeImage(name: string): Promise<string> {
  const p = await images.path(name);
  await execa("qemu-img", ["create", "-q", "-f", "raw", p, "288M"]);
  await execa("dd", ["if=/dev/urandom", `of=${p}`, "bs=1M", "count=96", "conv=notrunc", "status=none"]);
  await execa("dd", ["if=/dev/urandom", `of=${p}`, "bs=1M", "count=96", "seek=192", "conv=notrunc", "status=none"]);
  return p;
}

before(async () => {
  origin = await Origin.start();
  images = await ImageDir.create();
  baseDir = await mkdtemp(join(tmpdir(), "basecache-resume-"));
  image = await makeImage("resume.raw");
  changed = await makeImage("changed.raw");
  imageSize = (await stat(image)).size;
  [imageSha, changedSha] = await Promise.all([sha256Of(image), sha256Of(changed)]);
});

after(async () => {
  await origin.close();
  await images.cleanup();
  await rm(baseDir, { recursive: true, force: true });
});

async function recordedBytes(base: string): Promise<number> {
  const text = await readFile(join(baseDir, `${base}.part.resume`), "utf8").catch(() => "");
  try {
    return (JSON.parse(text) as { bytes: number }).bytes;
  } catch {
    return 0;
  }
}

/** Starts `basecache fetch` on a slow route at `path`, kills it with -9 once a record claims `atLeast` bytes. */
async function killMidDownload(id: string, path: string, atLeast: number, checksum = imageSha): Promise<number> {
  const base = baseNameFor(id);
  const url = origin.route(path, { kind: "slow", chunkBytes: MiB, intervalMs: 50, body: { file: image } });
  const child = startCli(["fetch", "--base-dir", baseDir, "--id", id, "--url", url, "--checksum", `sha256:${checksum}`]);
  const bytes = await eventually(async () => {
    const n = await recordedBytes(base);
    assert.ok(n >= atLeast, `the record claims ${n} bytes`);
    return n;
  }, { intervalMs: 20, timeoutMs: 120_000 });
  child.kill("SIGKILL");
  await child;
  const names = await readdir(baseDir);
  assert.ok(names.includes(`${base}.part`) && names.includes(`${base}.part.resume`), `the killed run left its .part and record: ${names.join(", ")}`);
  return bytes;
}

async function onlyCompleteBases(): Promise<void> {
  const names = await readdir(baseDir);
  const kinds = names.map((n) => classifyBaseFileName(n).kind);
  assert.ok(kinds.every((k) => k === "base" || k === "sidecar"), `unexpected files: ${names.join(", ")}`);
}

function rangeRequests(path: string): { range?: string; ifRange?: string }[] {
  return (origin.seen.get(path) ?? []).filter((h) => h.range !== undefined).map((h) => ({ range: h.range as string, ...(h["if-range"] ? { ifRange: h["if-range"] as string } : {}) }));
}

test("a fetch killed with -9 mid-download resumes with Range and If-Range: the origin serves about one image in all", async () => {
  const id = "resume-kill9";
  const path = "/resume.raw";
  const kept = await killMidDownload(id, path, 128 * MiB);
  origin.serve(path, { file: image });
  const again = await runFetch(["--base-dir", baseDir, "--id", id, "--url", origin.url(path), "--checksum", `sha256:${imageSha}`]);
  assert.equal(again.code, 0, again.json.message);
  const served = origin.bytesSentFor(path);
  assert.ok(served < 1.1 * imageSize, `the origin served ${served} bytes for an image of ${imageSize} (${(served / imageSize).toFixed(3)}x)`);
  const ranges = rangeRequests(path);
  assert.equal(ranges.length, 1, JSON.stringify(ranges));
  assert.match(ranges[0]?.range ?? "", /^bytes=\d+-$/);
  assert.ok(Number(/\d+/.exec(ranges[0]?.range ?? "")?.[0]) >= kept, "the range starts at or after the recorded bytes");
  assert.ok(ranges[0]?.ifRange, "the range came with If-Range");
  assert.equal(origin.answered.get(path)?.at(-1), 206);
  const json = again.json as typeof again.json & { resumedBytes?: number };
  assert.ok((json.resumedBytes ?? 0) >= kept, `--json says it resumed from ${json.resumedBytes} bytes`);
  assert.equal(again.json.sha256, imageSha);
  assert.equal(await sha256Of(again.json.path), imageSha, "the base is the whole image");
  await onlyCompleteBases();
});

test("a changed origin file answers the If-Range with 200: the fetch restarts from zero and stores the new file", async () => {
  const id = "resume-changed";
  const path = "/resume-changed.raw";
  await killMidDownload(id, path, 64 * MiB, changedSha);
  origin.resetCounts(path);
  origin.serve(path, { file: changed }, { etag: '"changed-v2"', lastModified: "Thu, 02 Jan 2025 00:00:00 GMT" });
  const again = await runFetch(["--base-dir", baseDir, "--id", id, "--url", origin.url(path), "--checksum", `sha256:${changedSha}`]);
  assert.equal(again.code, 0, again.json.message);
  assert.equal(rangeRequests(path).length, 1, "it asked for the rest, with If-Range");
  assert.deepEqual(origin.answered.get(path), [200]);
  assert.equal(origin.bytesSentFor(path), imageSize, "the second run downloaded the whole new file once");
  assert.equal((again.json as { resumedBytes?: number }).resumedBytes, 0);
  assert.equal(await sha256Of(again.json.path), changedSha);
  await onlyCompleteBases();
});

test("a changed origin file with the old checksum is refused by the checksum, and nothing is left", async () => {
  const id = "resume-changed-refused";
  const path = "/resume-changed-refused.raw";
  await killMidDownload(id, path, 64 * MiB);
  origin.serve(path, { file: changed }, { etag: '"changed-v3"' });
  const again = await runFetch(["--base-dir", baseDir, "--id", id, "--url", origin.url(path), "--checksum", `sha256:${imageSha}`]);
  assert.equal(again.code, 3, again.json.message);
  assert.equal(again.json.reason, "checksum-mismatch");
  assert.deepEqual((await readdir(baseDir)).filter((n) => n.startsWith(baseNameFor(id))), []);
});

test("an origin without Range support answers 200: the fetch restarts cleanly", async () => {
  const id = "resume-no-ranges";
  const path = "/resume-no-ranges.raw";
  await killMidDownload(id, path, 64 * MiB);
  origin.resetCounts(path);
  origin.serve(path, { file: image }, { ranges: false });
  const again = await runFetch(["--base-dir", baseDir, "--id", id, "--url", origin.url(path), "--checksum", `sha256:${imageSha}`]);
  assert.equal(again.code, 0, again.json.message);
  assert.deepEqual(origin.answered.get(path), [200]);
  assert.equal(origin.bytesSentFor(path), imageSize);
  assert.equal(await sha256Of(again.json.path), imageSha);
  await onlyCompleteBases();
});

test("a torn or planted record is not trusted: the .part is removed and the download starts from zero", async () => {
  const path = "/resume-planted.raw";
  const url = origin.serve(path, { file: image });
  const garbage = Buffer.alloc(64 * MiB, 0x5a);
  const valid = (id: string) => ({ version: 1, base: baseNameFor(id), request: requestKey({ source: { http: { url } }, checksum: `sha256:${imageSha}` }), url, etag: "\"x\"", contentLength: imageSize, bytes: 64 * MiB });
  const cases: [string, (id: string) => string][] = [
    ["torn", (id) => JSON.stringify(valid(id)).slice(0, 30)],
    ["another definition", (id) => JSON.stringify({ ...valid(id), request: "0".repeat(32) })],
    ["claims more than the .part holds", (id) => JSON.stringify({ ...valid(id), bytes: 96 * MiB })],
    ["another base", (id) => JSON.stringify({ ...valid(id), base: baseNameFor("someone-else") })],
  ];
  for (const [what, text] of cases) {
    const id = `resume-planted-${what.replaceAll(" ", "-")}`;
    const base = baseNameFor(id);
    await writeFile(join(baseDir, `${base}.part`), garbage, { mode: 0o600 });
    await writeFile(join(baseDir, `${base}.part.resume`), text(id), { mode: 0o600 });
    origin.resetCounts(path);
    const r = await runFetch(["--base-dir", baseDir, "--id", id, "--url", url, "--checksum", `sha256:${imageSha}`]);
    assert.equal(r.code, 0, `${what}: ${r.json.message}`);
    assert.deepEqual(rangeRequests(path), [], `${what}: no Range request`);
    assert.equal(origin.bytesSentFor(path), imageSize, what);
    assert.equal(await sha256Of(r.json.path), imageSha, what);
  }
  await onlyCompleteBases();
});

test("a planted .part with a record that passes every rule is resumed, and the whole-file checksum refuses it", async () => {
  const id = "resume-planted-valid";
  const base = baseNameFor(id);
  const path = "/resume-planted-valid.raw";
  const url = origin.serve(path, { file: image }, { etag: '"planted"' });
  const record = { version: 1, base, request: requestKey({ source: { http: { url } }, checksum: `sha256:${imageSha}` }), url, etag: '"planted"', contentLength: imageSize, bytes: 64 * MiB };
  await writeFile(join(baseDir, `${base}.part`), Buffer.alloc(64 * MiB, 0x5a), { mode: 0o600 });
  await writeFile(join(baseDir, `${base}.part.resume`), JSON.stringify(record), { mode: 0o600 });
  const r = await runFetch(["--base-dir", baseDir, "--id", id, "--url", url, "--checksum", `sha256:${imageSha}`]);
  assert.equal(rangeRequests(path).length, 1, "the planted record was taken as a resume");
  assert.equal(r.code, 3, r.json.message);
  assert.equal(r.json.reason, "checksum-mismatch");
  assert.deepEqual((await readdir(baseDir)).filter((n) => n.startsWith(base)), [], "nothing of it is left");
});

test("a symlink at the record's name is a planted file: refused, left alone, nothing downloaded", async () => {
  const id = "resume-symlink";
  const base = baseNameFor(id);
  const path = "/resume-symlink.raw";
  const url = origin.serve(path, { file: image });
  const target = join(baseDir, "..", `resume-target-${process.pid}`);
  await writeFile(join(baseDir, `${base}.part`), Buffer.alloc(MiB), { mode: 0o600 });
  await symlink(target, join(baseDir, `${base}.part.resume`));
  try {
    const r = await runFetch(["--base-dir", baseDir, "--id", id, "--url", url]);
    assert.equal(r.code, 2, r.json.message);
    assert.equal(r.json.reason, "foreign-file");
    assert.equal(origin.requestsTo(path), 0);
    assert.ok((await readdir(baseDir)).includes(`${base}.part.resume`), "the symlink stays for an operator to look at");
  } finally {
    await rm(join(baseDir, `${base}.part.resume`), { force: true });
    await rm(join(baseDir, `${base}.part`), { force: true });
  }
});

test("a fetch stopped with SIGTERM keeps its resumable .part, and the next run resumes it", async () => {
  const id = "resume-sigterm";
  const base = baseNameFor(id);
  const path = "/resume-sigterm.raw";
  const url = origin.route(path, { kind: "slow", chunkBytes: MiB, intervalMs: 50, body: { file: image } });
  const child = startCli(["fetch", "--base-dir", baseDir, "--id", id, "--url", url]);
  await eventually(async () => assert.ok((await recordedBytes(base)) >= 64 * MiB), { intervalMs: 20, timeoutMs: 120_000 });
  child.kill("SIGTERM");
  const r = await child;
  assert.notEqual(r.exitCode, 0);
  assert.deepEqual((await readdir(baseDir)).filter((n) => n.startsWith(base)).sort(), [`${base}.part`, `${base}.part.resume`]);
  origin.serve(path, { file: image });
  const again = await runFetch(["--base-dir", baseDir, "--id", id, "--url", url]);
  assert.equal(again.code, 0, again.json.message);
  assert.ok(((again.json as { resumedBytes?: number }).resumedBytes ?? 0) >= 64 * MiB);
  assert.equal(await sha256Of(again.json.path), imageSha);
  await onlyCompleteBases();
});

test("a compressed source killed mid-download leaves no resume record: its .part holds decoded bytes, so the next run starts from zero", async () => {
  const id = "resume-zstd";
  const base = baseNameFor(id);
  const path = "/resume.raw.zst";
  const zst = await images.path("resume.raw.zst");
  await execa("zstd", ["-q", "-1", "-f", "-o", zst, image]);
  const url = origin.route(path, { kind: "slow", chunkBytes: MiB, intervalMs: 50, body: { file: zst } });
  const child = startCli(["fetch", "--base-dir", baseDir, "--id", id, "--url", url, "--checksum", `sha256:${imageSha}`]);
  // Past two checkpoints' worth of decoded bytes, a plain download would have written its record by now.
  await eventually(async () => {
    const size = await stat(join(baseDir, `${base}.part`)).then((s) => s.size, () => 0);
    assert.ok(size >= 80 * MiB, `the .part holds ${size} bytes`);
  }, { intervalMs: 20, timeoutMs: 120_000 });
  child.kill("SIGKILL");
  await child;
  assert.ok(!(await readdir(baseDir)).includes(`${base}.part.resume`), "no resume record for a decoded body");
  origin.serve(path, { file: zst });
  const again = await runFetch(["--base-dir", baseDir, "--id", id, "--url", origin.url(path), "--checksum", `sha256:${imageSha}`]);
  assert.equal(again.code, 0, again.json.message);
  assert.deepEqual(rangeRequests(path), [], "no Range request into the compressed body");
  assert.equal(await sha256Of(join(baseDir, base)), imageSha);
  await onlyCompleteBases();
});
