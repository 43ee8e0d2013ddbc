import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { parseFetchFlags } from "../../src/cli/commands/fetch.js";
import { ConfigError } from "../../src/lib/errors.js";

describe("basecache fetch flags", () => {
  const ok = ["--base-dir", "/b", "--id", "x", "--url", "http://h/x"];
  test("parses the contract's flags", () => {
    const f = parseFetchFlags([...ok, "--checksum", `sha256:${"a".repeat(64)}`, "--max-virtual-size", "1Gi", "--json"], {});
    assert.ok(f !== "help");
    assert.equal(f.json, true);
    assert.equal(f.request.maxVirtualSize, 1024 ** 3);
    assert.deepEqual(f.request.source, { http: { url: "http://h/x" } });
  });
  test("takes a checksum file, its detached signature and a keyring", () => {
    const f = parseFetchFlags([...ok, "--checksum-from", "http://h/SUMS", "--checksum-name", "y.img", "--signature", "http://h/SUMS.gpg", "--keyring", "/k.asc"], {});
    assert.ok(f !== "help");
    assert.deepEqual(f.request.checksumFrom, { url: "http://h/SUMS", name: "y.img", signature: { keys: new Uint8Array(), url: "http://h/SUMS.gpg" } });
    assert.equal(f.keyringPath, "/k.asc");
    const clear = parseFetchFlags([...ok, "--checksum-from", "http://h/CHECKSUM", "--keyring", "/k.asc"], {});
    assert.ok(clear !== "help");
    assert.equal(clear.request.checksumFrom?.signature?.url, undefined, "no --signature: the file is clearsigned");
  });
  test("takes --registry-image instead of --url", () => {
    const f = parseFetchFlags(["--base-dir", "/b", "--id", "x", "--registry-image", "r.local/os/debian:12"], {});
    assert.ok(f !== "help");
    assert.deepEqual(f.request.source, { registry: { image: "r.local/os/debian:12" } });
  });
  const bad: [string, string[]][] = [
    ["no base dir", ["--id", "x", "--url", "http://h/x"]],
    ["no id", ["--base-dir", "/b", "--url", "http://h/x"]],
    ["no source", ["--base-dir", "/b", "--id", "x"]],
    ["two sources", [...ok, "--registry-image", "r/x:1"]],
    ["a file URL", ["--base-dir", "/b", "--id", "x", "--url", "file:///etc/passwd"]],
    ["a bad checksum", [...ok, "--checksum", "md5:00"]],
    ["a bad size", [...ok, "--max-virtual-size", "lots"]],
    ["--checksum with --checksum-from", [...ok, "--checksum", `sha256:${"a".repeat(64)}`, "--checksum-from", "http://h/SUMS"]],
    ["--checksum-from with a registry image", ["--base-dir", "/b", "--id", "x", "--registry-image", "r/x:1", "--checksum-from", "http://h/SUMS"]],
    ["--checksum-from with a file URL", [...ok, "--checksum-from", "file:///etc/SUMS"]],
    ["--signature without --keyring", [...ok, "--checksum-from", "http://h/SUMS", "--signature", "http://h/SUMS.gpg"]],
    ["--keyring without --checksum-from", [...ok, "--keyring", "/k.asc"]],
    ["--checksum-name without --checksum-from", [...ok, "--checksum-name", "x.img"]],
    ["an unknown flag", [...ok, "--force"]],
    ["a positional", [...ok, "extra"]],
  ];
  for (const [label, argv] of bad) test(`refuses ${label} as a usage error`, () => assert.throws(() => parseFetchFlags(argv, {}), ConfigError));
  test("refuses a bad tuning variable", () => assert.throws(() => parseFetchFlags(ok, { BASECACHE_FETCH_ATTEMPTS: "0" }), ConfigError));
});
