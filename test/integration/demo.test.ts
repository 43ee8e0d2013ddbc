/**
 * `npm run demo` end to end, as a new user runs it: it must exit 0, show the image Ready on the two
 * matching nodes, keep the base an instance disk uses, remove the other, and leave no temp dir behind.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";

const repoRoot = resolve(fileURLToPath(new URL("../..", import.meta.url)));

async function demoDirs(): Promise<Set<string>> {
  return new Set((await readdir(tmpdir())).filter((f) => f.startsWith("basecache-demo-")));
}

test("npm run demo runs the whole system and exits 0", { timeout: 15 * 60_000 }, async () => {
  const before = await demoDirs();
  const res = await execa("npm", ["run", "--silent", "demo"], { cwd: repoRoot, reject: false, stdin: "ignore", all: true, env: { CI: "true" } });
  const tail = res.all.split("\n").slice(-40).join("\n");
  assert.equal(res.exitCode, 0, `the demo exited ${String(res.exitCode)}:\n${tail}`);
  assert.match(res.stdout, /READY 2\/2, Ready=True \(AllNodesReady\)/);
  assert.match(res.stdout, /demo-node-c _base: \(empty\)/, "the node the ImageCache does not select holds nothing");
  assert.match(res.stdout, /demo-node-b: base [0-9a-f]{12}… removed/);
  assert.match(res.stdout, /demo-node-a: base [0-9a-f]{12}… kept: InUse/);
  // Events are best effort, so a missing permission would not fail a step; their presence proves the
  // agents could record them under deploy/'s RBAC.
  assert.match(res.stdout, /NodeImageCache\/demo-node-b\s+BaseRemoved\s+Removed base/);
  assert.match(res.stdout, /NodeImageCache\/demo-node-a\s+ImageReady/);
  assert.match(res.stdout, /ImageCache\/ubuntu-noble\s+\w+/, "the controller recorded an Event too");
  const left = [...(await demoDirs())].filter((d) => !before.has(d));
  assert.deepEqual(left, [], "the demo removed its temp dirs");
});
