/**
 * Re-verification through the cluster: the real agent (its ServiceAccount) stores two images with the SHA-256 of
 * each raw base in its sidecar, then re-hashes them. Bytes changed on disk are found both when the mtime gives the
 * change away and when it was put back (only the periodic re-hash sees that). The unused base is removed by GC and
 * fetched again; the base an overlay uses is kept, flagged (status, Event, metric), refused for new disks, and
 * repaired once its overlay is gone. The real controller answers GC's question about pods.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { open, readFile, rm, stat, utimes } from "node:fs/promises";
import { join } from "node:path";
import { baseNameFor } from "../../src/core/names.js";
import { AgentTestbed } from "../harness/agent-testbed.js";
import type { AgentProcess, NodeDirs } from "../harness/agent-process.js";
import { eventually } from "../harness/eventually.js";
import { startCli } from "../harness/fetch-cli.js";
import { annotateNic, eventsAbout, imageStatus } from "./agent-helpers.js";

const node = "verify-node";

let bed: AgentTestbed;
let agent: AgentProcess;
let dirs: NodeDirs;

before(async () => {
  bed = await AgentTestbed.start();
  await bed.controller();
  const n = await bed.node(node);
  dirs = n.dirs;
  // Every base is re-hashed every 3s and sizes and mtimes are compared every second: the test's pace, not a node's.
  agent = bed.launch(n, { args: ["--verify-interval", "3s", "--verify-look", "1s"] });
});

after(async () => {
  await bed?.stop();
});

const sha256 = async (path: string) => createHash("sha256").update(await readFile(path)).digest("hex");
type Sidecar = { raw?: { sha256: string }; verifiedAt?: string; corrupt?: { expected: string; actual: string } };
const sidecarOf = async (id: string) => JSON.parse(await readFile(join(dirs.base, `${baseNameFor(id)}.info.json`), "utf8")) as Sidecar;
const verifications = async (result: string) => (await agent.metrics()).get(`basecache_base_verifications_total{result="${result}"}`) ?? 0;

/** Changes one byte of a base in place, as bit rot or a tamperer would; `keepMtime` puts its mtime back. */
async function flipByte(id: string, keepMtime: boolean): Promise<void> {
  const path = join(dirs.base, baseNameFor(id));
  const before = await stat(path);
  const fh = await open(path, "r+");
  try {
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, 4096);
    b[0] = (b[0] ?? 0) ^ 0xff;
    await fh.write(b, 0, 1, 4096);
  } finally {
    await fh.close();
  }
  if (keepMtime) await utimes(path, before.atime, before.mtime);
}

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const r = await startCli(args);
  return { code: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

test("a changed base is found, flagged and fetched again once nothing uses it; one an overlay uses waits for it", async () => {
  const free = await bed.images.qcow2("free.qcow2", 41);
  const held = await bed.images.qcow2("held.qcow2", 42);
  await bed.admin.createImageCache("verified", {
    images: [
      { id: "free", source: { http: { url: bed.origin.serve("/free.qcow2", { file: free }) } } },
      { id: "held", source: { http: { url: bed.origin.serve("/held.qcow2", { file: held }) } } },
    ],
  });
  for (const id of ["free", "held"]) {
    await eventually(async () => assert.equal((await imageStatus(bed.admin, node, id))?.phase, "Ready"), { timeoutMs: 90_000, description: `${id} Ready` });
    const recorded = (await sidecarOf(id)).raw?.sha256;
    assert.equal(recorded, await sha256(join(dirs.base, baseNameFor(id))), `${id}: the sidecar records the raw base's digest`);
  }
  const good = { free: await sha256(join(dirs.base, baseNameFor("free"))), held: await sha256(join(dirs.base, baseNameFor("held"))) };
  await eventually(async () => assert.ok((await verifications("ok")) >= 2), { timeoutMs: 30_000, description: "both bases re-verified once" });

  const vm1 = join(dirs.instances, "vm1.qcow2");
  const made = await cli(["disk", "create", "--base-dir", dirs.base, "--id", "held", "--out", vm1]);
  assert.equal(made.code, 0, made.stderr);
  const fetchesOfFree = bed.origin.seen.get("/free.qcow2") ?? 0;

  await flipByte("held", false); // the mtime moves: seen at the next look
  await flipByte("free", true); // the mtime is put back: only the periodic re-hash sees it

  // The used base: flagged, kept, refused for new disks; its overlay still opens.
  await eventually(
    async () => {
      const s = await imageStatus(bed.admin, node, "held");
      assert.deepEqual([s?.phase, s?.reason], ["Failed", "base-corrupt"], s?.message);
      assert.match(s?.message ?? "", new RegExp(`${baseNameFor("held")}.*no longer matches`));
    },
    { timeoutMs: 60_000, description: "held flagged" },
  );
  assert.equal((await sidecarOf("held")).corrupt?.expected, good.held);
  const refused = await cli(["disk", "create", "--base-dir", dirs.base, "--id", "held", "--out", join(dirs.instances, "vm2.qcow2"), "--json"]);
  assert.equal(refused.code, 3, refused.stderr);
  assert.match(refused.stderr, /no longer matches the digest recorded when it was stored/);
  assert.equal((await cli(["disk", "inspect", vm1])).code, 0);

  // The unused base: removed by GC and fetched again, with the bytes it had when it was stored.
  await eventually(
    async () => {
      assert.ok((bed.origin.seen.get("/free.qcow2") ?? 0) > fetchesOfFree, "fetched again");
      assert.equal((await imageStatus(bed.admin, node, "free"))?.phase, "Ready");
      assert.equal(await sha256(join(dirs.base, baseNameFor("free"))), good.free);
      assert.equal((await sidecarOf("free")).corrupt, undefined);
    },
    { timeoutMs: 90_000, description: "free removed and fetched again" },
  );
  assert.ok((await verifications("corrupt")) >= 2);
  const events = await eventsAbout(bed.admin, node);
  // Events of one reason on one object are aggregated by the recorder: the first finding's note is the one kept.
  assert.ok(events.some((e) => e.reason === "BaseCorrupt" && e.type === "Warning" && new RegExp(`(${baseNameFor("held")}|${baseNameFor("free")}).*no longer matches`).test(e.note)), JSON.stringify(events.map((e) => [e.reason, e.note])));

  // Its overlay gone, the flagged base goes at the next GC pass and comes back whole.
  await rm(vm1);
  await annotateNic(bed.admin, node, { "basecache.io/gc-requested": "after-vm1" });
  await eventually(
    async () => {
      assert.equal((await imageStatus(bed.admin, node, "held"))?.phase, "Ready");
      assert.equal(await sha256(join(dirs.base, baseNameFor("held"))), good.held);
    },
    { timeoutMs: 90_000, description: "held repaired once unused" },
  );
});
