/**
 * `npm run demo [-- --keep]`: basecache end to end, locally.
 *
 * Stage 1, the image pipeline on its own: it builds images with qemu-img, serves them from a loopback HTTP
 * origin, runs `fetchImage` on each (good ones become raw bases, hostile ones are refused), shows a cache hit
 * and five coalesced fetches downloading nothing extra, and makes an instance disk on a base.
 *
 * Stage 2, the whole system (demo/system.ts): a real control plane, the controller and one agent per node as
 * local processes, the example ImageCache from deploy/examples/, an instance disk, and garbage collection.
 * `--keep` leaves stage 2 running at the end and prints a kubeconfig to explore it with kubectl.
 */
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { formatBytes } from "../src/core/quantity.js";
import { createInstanceDisk, inspectInstanceDisk } from "../src/image/instance-disk.js";
import { describeOutcome, fetchImage, type FetchResult } from "../src/image/pipeline.js";
import { ImageDir } from "../test/harness/images.js";
import { Origin } from "../test/harness/origin.js";
import { runSystemDemo } from "./system.js";

const say = (line = "") => process.stdout.write(line + "\n");

async function runPipelineStage(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), "basecache-demo-"));
  const baseDir = join(work, "_base");
  const images = await ImageDir.create("basecache-demo-img-");
  const origin = await Origin.start();
  try {
    say("basecache demo, stage 1 of 2: the image pipeline");
    say(`  base dir: ${baseDir}`);
    say();

    say("Building images with qemu-img and serving them on " + origin.url("/"));
    const raw = await images.raw("disk.raw", 64);
    const catalogue: [string, string][] = [
      ["good qcow2", origin.serve("/good.qcow2", { file: await images.convert(raw, "good.qcow2", "qcow2") })],
      ["good vmdk (streamOptimized)", origin.serve("/good.vmdk", { file: await images.convert(raw, "good.vmdk", "vmdk", ["subformat=streamOptimized"]) })],
      ["good raw", origin.serve("/good.raw", { file: raw })],
      ["qcow2 backed by /etc/passwd", origin.serve("/evil-backing.qcow2", { file: await images.withBacking("evil.qcow2", "/etc/passwd", "raw") })],
      ["vmdk whose extent is /etc/hostname", origin.serve("/evil.vmdk", { file: await images.vmdkOutsideExtent("evil.vmdk") })],
      ["LUKS-encrypted qcow2", origin.serve("/luks.qcow2", { file: await images.encrypted("luks.qcow2") })],
      ["a login page served with 200", origin.route("/login", { kind: "html" })],
      ["a redirect to file:///etc/shadow", origin.route("/sneaky", { kind: "redirect", to: "file:///etc/shadow" })],
    ];
    say();

    say("Fetching each image into the base dir");
    const ready: FetchResult[] = [];
    for (const [label, url] of catalogue) {
      try {
        const r = await fetchImage({ baseDir, id: label, source: { http: { url } }, maxVirtualSize: 1024 ** 3, retry: { attempts: 2, baseMs: 100, maxMs: 200 } });
        ready.push(r);
        say(`  ready     ${label.padEnd(36)} ${r.format.padEnd(6)} ${formatBytes(r.virtualSize).padStart(9)} virtual, ${formatBytes(r.allocatedBytes).padStart(9)} on disk, ${r.seconds.toFixed(2)} s`);
      } catch (err) {
        const o = describeOutcome(err);
        say(`  ${o.status.padEnd(9)} ${label.padEnd(36)} ${o.reason}: ${o.message}`);
      }
    }
    say();

    const first = ready[0];
    if (!first) throw new Error("Demo failed: no image became a base");
    const goodUrl = catalogue[0]?.[1] ?? "";
    const before = origin.requestsTo("/good.qcow2");
    const again = await fetchImage({ baseDir, id: first.id, source: { http: { url: goodUrl } } });
    say(`Fetching "${first.id}" again: cached=${again.cached}, downloaded ${formatBytes(again.bytesDownloaded)}, origin requests ${before} -> ${origin.requestsTo("/good.qcow2")}`);

    const slow = origin.route("/slow.qcow2", { kind: "slow", chunkBytes: 256 * 1024, intervalMs: 40, body: { file: images.path("good.qcow2") } });
    const five = await Promise.all(Array.from({ length: 5 }, () => fetchImage({ baseDir, id: "shared image", source: { http: { url: slow } } })));
    say(`Five concurrent fetches of one new image: ${five.filter((r) => !r.cached).length} downloaded, origin requests: ${origin.requestsTo("/slow.qcow2")}`);
    say();

    const disk = await createInstanceDisk({ baseDir, id: first.id, out: join(work, "instances", "vm-1", "disk"), size: 128 * 1024 ** 2 });
    const seen = await inspectInstanceDisk(disk.path);
    say(`Created instance disk ${disk.path}: ${disk.format}, ${formatBytes(disk.virtualSize)}, backed by base ${seen.baseName ?? "?"} (format ${seen.backingFormat ?? "?"})`);
    say();

    say("Base dir now holds:");
    for (const name of (await readdir(baseDir)).sort()) say(`  ${name}`);
  } finally {
    await origin.close();
    await images.cleanup();
    await rm(work, { recursive: true, force: true });
  }
}

async function main(argv: string[]): Promise<number> {
  const unknown = argv.filter((a) => a !== "--keep");
  if (unknown.length > 0) {
    process.stderr.write(`demo: unknown argument "${unknown[0] ?? ""}"\nUsage: npm run demo [-- --keep]\n`);
    return 2;
  }
  const stop = new AbortController();
  const onSignal = () => stop.abort(new Error("Interrupted"));
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  // A closed stdout (`npm run demo | head`) stops the demo the same way, so that it still cleans up.
  process.stdout.on("error", onSignal);
  try {
    await runPipelineStage();
    if (stop.signal.aborted) throw stop.signal.reason;
    say();
    say("basecache demo, stage 2 of 2: the whole system (control plane, controller, one agent per node)");
    await runSystemDemo({ keep: argv.includes("--keep"), say, signal: stop.signal });
    say();
    say("Demo finished.");
    return 0;
  } catch (err) {
    if (stop.signal.aborted) {
      process.stderr.write("demo: interrupted; cleaned up\n");
      return 130;
    }
    process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

const code = await main(process.argv.slice(2));
// Exit explicitly: a client library's keep-alive sockets must not hold the process open after cleanup.
process.stdout.write("", () => process.exit(code));
