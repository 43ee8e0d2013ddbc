import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { baseNameFor } from "../../src/core/names.js";
import { Origin } from "../harness/origin.js";
import { ImageDir, sameContent } from "../harness/images.js";
import { filesStartingWith, runFetch, startCli } from "../harness/fetch-cli.js";

let origin: Origin;
let images: ImageDir;
let baseDir: string;
let qcow2: string;
let qcow2Size: number;
const MiB = 1024 * 1024;

before(async () => {
  origin = await Origin.start();
  images = await ImageDir.create();
  baseDir = await mkdtemp(join(tmpdir(), "basecache-base-"));
  const raw = await images.raw("src.raw", 24);
  qcow2 = await images.convert(raw, "src.qcow2", "qcow2");
  qcow2Size = (await readFile(qcow2)).length;
  assert.ok(qcow2Size > 2 * MiB, "the test image must be larger than the fault offsets");
});

after(async () => {
  await origin.close();
  await images.cleanup();
  await rm(baseDir, { recursive: true, force: true });
});

const fetchArgs = (id: string, url: string, ...extra: string[]) => ["--base-dir", baseDir, "--id", id, "--url", url, ...extra];

async function assertNothingLeft(id: string): Promise<void> {
  assert.deepEqual(await filesStartingWith(baseDir, baseNameFor(id)), []);
}

describe("origin faults", () => {
  const malformed: [string, Buffer][] = [
    ["an invalid Content-Length", Buffer.from("HTTP/1.1 200 OK\r\nContent-Length: 12abc\r\n\r\nhello")],
    ["two different Content-Lengths", Buffer.from("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello")],
    ["an answer that is not HTTP (an SSH banner)", Buffer.from("SSH-2.0-OpenSSH_9.2p1\r\n")],
    ["binary garbage", Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff, 0x0d, 0x0a, 0x0d, 0x0a])],
  ];
  for (const [what, bytes] of malformed) {
    test(`${what} is a source failure: exit 4, reason bad-response, not retried`, async () => {
      const path = `/malformed-${what.replace(/\W+/g, "-")}`;
      const { code, json } = await runFetch(fetchArgs("malformed", origin.route(path, { kind: "raw-answer", bytes })));
      assert.equal(json.reason, "bad-response", json.message);
      assert.equal(code, 4);
      assert.match(json.message, /^Cannot download "http:\/\/127\.0\.0\.1:\d+\/malformed-[^"]+": the origin's answer is not valid HTTP \(HPE_/);
      assert.equal(origin.requestsTo(path), 1);
      await assertNothingLeft("malformed");
    });
  }

  test("an origin that never sends its headers is a bounded wait: a stall, retried, then exit 4", async () => {
    const { code, json } = await runFetch(fetchArgs("silent", origin.route("/silent", { kind: "silent" })));
    assert.equal(code, 4, json.message);
    assert.equal(json.reason, "retries-exhausted");
    assert.match(json.message, /no data for 1500 ms/);
    await assertNothingLeft("silent");
  });

  test("a 404 fails at once with exit 4 and reason http-status", async () => {
    const url = origin.route("/missing", { kind: "status", code: 404 });
    const { code, json } = await runFetch(fetchArgs("404", url));
    assert.equal(code, 4);
    assert.equal(json.status, "failed");
    assert.equal(json.reason, "http-status");
    assert.equal(origin.requestsTo("/missing"), 1, "a 404 is not retried");
    await assertNothingLeft("404");
  });

  test("a 500 is retried and the fetch succeeds when the origin recovers", async () => {
    const url = origin.route("/flaky", { kind: "fail-then-ok", failures: 2, code: 500, body: { file: qcow2 } });
    const { code, json } = await runFetch(fetchArgs("flaky", url));
    assert.equal(code, 0, json.message);
    assert.equal(origin.requestsTo("/flaky"), 3);
  });

  test("retries are bounded: a 500 forever gives up after exactly the configured attempts", async () => {
    const url = origin.route("/down", { kind: "status", code: 503 });
    const { code, json } = await runFetch(fetchArgs("down", url), { BASECACHE_FETCH_ATTEMPTS: "3" });
    assert.equal(code, 4);
    assert.equal(json.reason, "retries-exhausted");
    assert.equal(origin.requestsTo("/down"), 3);
    await assertNothingLeft("down");
  });

  test("retries stay bounded when every connection sends a few bytes and then drops", async () => {
    const url = origin.route("/dribble", { kind: "drop", afterBytes: 1000, times: 1_000_000, body: { file: qcow2 } });
    const { code, json } = await runFetch(fetchArgs("dribble", url), { BASECACHE_FETCH_ATTEMPTS: "3" });
    assert.equal(code, 4, json.message);
    assert.equal(json.reason, "retries-exhausted");
    assert.equal(origin.requestsTo("/dribble"), 3);
    await assertNothingLeft("dribble");
  });

  test("a connection dropped mid-body resumes with Range and If-Range", async () => {
    const url = origin.route("/drop", { kind: "drop", afterBytes: 700 * 1024, times: 2, body: { file: qcow2 } });
    const { code, json } = await runFetch(fetchArgs("drop", url));
    assert.equal(code, 0, json.message);
    assert.ok(await sameContent(json.path, qcow2, "qcow2"));
    const seen = origin.seen.get("/drop") ?? [];
    assert.equal(seen.length, 3);
    assert.match(seen[1]?.range ?? "", /^bytes=\d+-$/);
    assert.ok(seen[1]?.["if-range"], "a resumed request carries If-Range");
    assert.ok(origin.bytesSentFor("/drop") <= qcow2Size + 64 * 1024, `sent ${origin.bytesSentFor("/drop")} bytes for a ${qcow2Size}-byte image`);
    assert.equal(json.sha256, createHash("sha256").update(await readFile(qcow2)).digest("hex"));
  });

  test("without a validator a dropped download restarts from the beginning and still succeeds", async () => {
    const url = origin.route("/drop-nv", { kind: "drop", afterBytes: 700 * 1024, times: 1, body: { file: qcow2 }, opts: { etag: false, lastModified: false } });
    const { code, json } = await runFetch(fetchArgs("drop-nv", url));
    assert.equal(code, 0, json.message);
    assert.equal(origin.requestsTo("/drop-nv"), 2);
    assert.equal((origin.seen.get("/drop-nv") ?? [])[1]?.range, undefined);
    assert.ok(await sameContent(json.path, qcow2, "qcow2"));
  });

  test("a stalled body times out and resumes", async () => {
    const url = origin.route("/stall", { kind: "stall", afterBytes: 700 * 1024, times: 1, body: { file: qcow2 } });
    const { code, json } = await runFetch(fetchArgs("stall", url));
    assert.equal(code, 0, json.message);
    assert.equal(origin.requestsTo("/stall"), 2);
    assert.ok(await sameContent(json.path, qcow2, "qcow2"));
  });

  test("a slow body completes", async () => {
    const url = origin.route("/slow", { kind: "slow", chunkBytes: 512 * 1024, intervalMs: 20, body: { file: qcow2 } });
    const { code, json } = await runFetch(fetchArgs("slow", url));
    assert.equal(code, 0, json.message);
  });

  test("a body shorter than its Content-Length fails with exit 4 after bounded retries", async () => {
    const url = origin.route("/short", { kind: "wrong-length", declared: 8 * MiB, body: Buffer.alloc(MiB, 7) });
    const { code, json } = await runFetch(fetchArgs("short", url), { BASECACHE_FETCH_ATTEMPTS: "2" });
    assert.equal(code, 4, json.message);
    assert.equal(json.reason, "retries-exhausted");
    await assertNothingLeft("short");
  });

  test("a redirect loop fails with too-many-redirects", async () => {
    origin.route("/loop-a", { kind: "redirect", to: "/loop-b" });
    const url = origin.route("/loop-b", { kind: "redirect", to: "/loop-a" });
    const { code, json } = await runFetch(fetchArgs("loop", url));
    assert.equal(code, 4);
    assert.equal(json.reason, "too-many-redirects");
    await assertNothingLeft("loop");
  });

  test("a redirect to file:// is refused with bad-redirect", async () => {
    const url = origin.route("/to-file", { kind: "redirect", to: "file:///etc/passwd" });
    const { code, json } = await runFetch(fetchArgs("to-file", url));
    assert.equal(code, 4);
    assert.equal(json.reason, "bad-redirect");
    await assertNothingLeft("to-file");
  });

  test("a redirect to another http URL is followed", async () => {
    origin.serve("/real.qcow2", { file: qcow2 });
    const url = origin.route("/moved", { kind: "redirect", to: "/real.qcow2", code: 301 });
    const { code, json } = await runFetch(fetchArgs("moved", url));
    assert.equal(code, 0, json.message);
  });

  test("an unreachable origin fails with exit 4", async () => {
    const { code, json } = await runFetch(fetchArgs("unreachable", "http://127.0.0.1:1/x"), { BASECACHE_FETCH_ATTEMPTS: "2" });
    assert.equal(code, 4);
    assert.equal(json.status, "failed");
    await assertNothingLeft("unreachable");
  });
});

describe("usage", () => {
  test("a usage error exits 2 and creates nothing", async () => {
    const r = await startCli(["fetch", "--base-dir", baseDir, "--id", "usage", "--url", "file:///etc/passwd"]);
    assert.equal(r.exitCode, 2);
    await assertNothingLeft("usage");
  });
});

describe("cache and checksums", () => {
  test("a cache hit downloads nothing", async () => {
    const url = origin.serve("/cached.qcow2", { file: qcow2 });
    const first = await runFetch(fetchArgs("cached", url));
    assert.equal(first.code, 0, first.json.message);
    assert.equal(first.json.cached, false);
    const requests = origin.requestsTo("/cached.qcow2");
    const bytes = origin.bytesSentFor("/cached.qcow2");
    const second = await runFetch(fetchArgs("cached", url));
    assert.equal(second.code, 0);
    assert.equal(second.json.cached, true);
    assert.equal(second.json.bytesDownloaded, 0);
    assert.equal(second.json.sha256, first.json.sha256);
    assert.equal(origin.requestsTo("/cached.qcow2"), requests);
    assert.equal(origin.bytesSentFor("/cached.qcow2"), bytes);
  });

  test("matching sha256 and sha512 checksums are accepted", async () => {
    const data = await readFile(qcow2);
    const url = origin.serve("/sums.qcow2", { file: qcow2 });
    const s256 = createHash("sha256").update(data).digest("hex");
    const s512 = createHash("sha512").update(data).digest("hex");
    assert.equal((await runFetch(fetchArgs("sum256", url, "--checksum", `sha256:${s256.toUpperCase()}`))).code, 0);
    assert.equal((await runFetch(fetchArgs("sum512", url, "--checksum", `sha512:${s512}`))).code, 0);
    const bad = await runFetch(fetchArgs("sum512-bad", url, "--checksum", `sha512:${"a".repeat(128)}`));
    assert.equal(bad.code, 3);
    assert.equal(bad.json.reason, "checksum-mismatch");
    await assertNothingLeft("sum512-bad");
  });
});
