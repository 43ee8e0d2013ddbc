/**
 * bench/fetch: how long does `fetchImage` take end to end (download, hash, inspect, check, convert, fsync,
 * rename), relative to what a careful person types, measured in the same run on the same loopback origin?
 * And is memory flat in the image size (streaming, never buffering)?
 *
 * Run: node --import tsx bench/fetch/main.ts [--reps N] [--quick]
 * Ours runs compiled (tsc into .tmp/), as the container image runs it.
 * It needs about 15 GiB of free space under $TMPDIR (sparse files; ~3 GiB really written).
 */
import { execa } from "execa";
import { mkdir, mkdtemp, rm, stat } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { Origin } from "../../test/harness/origin.js";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
// NOTE: the container runs compiled JavaScript, so ours is measured compiled too: tsx would add half a second
// of start-up to every fetch that no deployment pays. Built under the repo so that node_modules resolve.
const buildDir = join(repoRoot, ".tmp", `bench-fetch-${process.pid}`);
const child = join(buildDir, "bench", "fetch", "child.js");
const { values } = parseArgs({ options: { reps: { type: "string", default: "3" }, quick: { type: "boolean", default: false } } });
const reps = Number(values.reps);
const log = (s: string) => process.stderr.write(s + "\n");

interface Run {
  seconds: number;
  /** Ours only: seconds until the conversion started (download, hash, inspection and checks done). */
  untilConvert?: number;
  allocatedBytes: number;
  maxRssBytes?: number;
}

/** Builds the realistic image: 2 GiB virtual, ~700 MiB random data in runs, allocated zero clusters, holes. */
async function buildImages(dir: string, quick: boolean) {
  const raw = join(dir, "disk.raw");
  await execa("qemu-img", ["create", "-q", "-f", "raw", raw, "2G"]);
  const runs = quick ? 4 : 14;
  for (let i = 0; i < runs; i++) {
    // 50 MiB runs of random data spread over the first 1.75 GiB.
    await execa("dd", ["if=/dev/urandom", `of=${raw}`, "bs=1M", "count=50", `seek=${i * 120}`, "conv=notrunc", "status=none"]);
  }
  const qcow2 = join(dir, "disk.qcow2");
  await execa("qemu-img", ["convert", "-q", "-f", "raw", "-O", "qcow2", raw, qcow2]);
  // Allocated zero clusters: write data, then zero it without unmapping, so the clusters keep their host
  // offsets and carry the qcow2 v3 zero flag (a plain `write -z` on unwritten clusters allocates nothing).
  await execa("qemu-io", ["-f", "qcow2", "-c", "write -P 0xab 1800M 100M", "-c", "write -z 1800M 100M", qcow2]);
  const compressed = join(dir, "disk-c.qcow2");
  await execa("qemu-img", ["convert", "-q", "-c", "-f", "qcow2", "-O", "qcow2", qcow2, compressed]);
  const huge = join(dir, "huge.raw");
  const small = join(dir, "small.raw");
  await execa("qemu-img", ["create", "-q", "-f", "raw", huge, quick ? "4G" : "10G"]);
  await execa("qemu-img", ["create", "-q", "-f", "raw", small, "1G"]);
  for (const f of [huge, small]) await execa("dd", ["if=/dev/urandom", `of=${f}`, "bs=1M", "count=64", "conv=notrunc", "status=none"]);
  return { raw, qcow2, compressed, huge, small };
}

/** Our fetch in a fresh process, timed from the parent like the shell baselines, process start included. */
async function ours(baseDir: string, id: string, url: string, checksum: string): Promise<Run> {
  const t0 = performance.now();
  const r = await execa(process.execPath, [child, baseDir, id, url, checksum], { env: { BASECACHE_LOG_LEVEL: "warn" } });
  const seconds = (performance.now() - t0) / 1000;
  const inner = JSON.parse(r.stdout) as Run & { startupSeconds: number };
  return { ...inner, seconds, untilConvert: inner.untilConvert === undefined ? undefined : inner.untilConvert + inner.startupSeconds };
}

async function sha256Of(path: string): Promise<string> {
  const { stdout } = await execa("sha256sum", [path]);
  return `sha256:${stdout.split(" ")[0] ?? ""}`;
}

async function shell(script: string, cwd: string, out: string): Promise<Run> {
  const t0 = performance.now();
  await execa("bash", ["-c", script], { cwd });
  const seconds = (performance.now() - t0) / 1000;
  const st = await stat(join(cwd, out));
  return { seconds, allocatedBytes: st.blocks * 512 };
}

const careful = (url: string, fmt: string) =>
  `curl -sf -o p.part ${url} && sync && sha256sum p.part >/dev/null && qemu-img convert -t none -f ${fmt} -O raw p.part b.tmp && mv b.tmp b`;
const carefulNoHash = (url: string, fmt: string) => `curl -sf -o p.part ${url} && sync && qemu-img convert -t none -f ${fmt} -O raw p.part b.tmp && mv b.tmp b`;
// The raw baseline, as it gives it: curl, then qemu-img convert -f raw -O raw (default cache, no fsync).
const rawBaseline = (url: string) => `curl -sf -o p.part ${url} && qemu-img convert -f raw -O raw p.part b.tmp && mv b.tmp b`;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

/** Runs each variant once per round, interleaved, so that a burst of load on the shared machine hits all alike. */
async function measure(work: string, variants: Record<string, (dir: string) => Promise<Run>>): Promise<Record<string, Run[]>> {
  const out: Record<string, Run[]> = Object.fromEntries(Object.keys(variants).map((k) => [k, [] as Run[]]));
  for (let i = 0; i < reps; i++) {
    for (const [label, fn] of Object.entries(variants)) {
      const dir = join(work, `${label}-${i}`);
      await mkdir(dir, { recursive: true });
      await execa("sync");
      out[label]?.push(await fn(dir));
      await rm(dir, { recursive: true, force: true });
    }
  }
  for (const [label, runs] of Object.entries(out)) {
    const phases = runs.some((r) => r.untilConvert !== undefined) ? ` (conversion started at ${runs.map((r) => r.untilConvert?.toFixed(2) ?? "-").join(" ")} s)` : "";
    log(`  ${label}: ${runs.map((r) => r.seconds.toFixed(2)).join(" ")} s${phases}`);
  }
  return out;
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), "basecache-bench-"));
  const origin = await Origin.start();
  try {
    log("Compiling basecache");
    await execa("npx", ["tsc", "-p", "tsconfig.json", "--outDir", buildDir, "--sourceMap", "false"], { cwd: repoRoot });
    log("Building images");
    const img = await buildImages(work, values.quick);
    const q = origin.serve("/disk.qcow2", { file: img.qcow2 });
    const c = origin.serve("/disk-c.qcow2", { file: img.compressed });
    const r = origin.serve("/disk.raw", { file: img.raw });
    const huge = origin.serve("/huge.raw", { file: img.huge });
    const small = origin.serve("/small.raw", { file: img.small });
    const qcowBytes = (await stat(img.qcow2)).size;
    log(`qcow2: ${(qcowBytes / MiB).toFixed(0)} MiB file, 2 GiB virtual; reps: ${reps}`);
    // Ours verifies the checksum it is given, as the agent does when an ImageCache names one.
    const sums = { qcow2: await sha256Of(img.qcow2), compressed: await sha256Of(img.compressed), raw: await sha256Of(img.raw) };

    const rows: string[] = [];
    const row = (name: string, base: Run[], us: Run[], goal: string) => {
      const ratio = median(us.map((x) => x.seconds)) / median(base.map((x) => x.seconds));
      rows.push(`| ${name} | ${median(base.map((x) => x.seconds)).toFixed(2)} s | ${median(us.map((x) => x.seconds)).toFixed(2)} s | **${ratio.toFixed(2)}** | ${goal} |`);
    };

    log("qcow2 source");
    const m1 = await measure(work, {
      careful: (d) => shell(careful(q, "qcow2"), d, "b"),
      "careful-nohash": (d) => shell(carefulNoHash(q, "qcow2"), d, "b"),
      ours: (d) => ours(d, "q", q, sums.qcow2),
    });
    row("qcow2 vs curl+sync+sha256sum+convert", m1.careful ?? [], m1.ours ?? [], "≤ 0.65");
    row("qcow2 vs curl+sync+convert (no hash)", m1["careful-nohash"] ?? [], m1.ours ?? [], "≤ 1.15");

    log("compressed qcow2 source");
    const m2 = await measure(work, { careful: (d) => shell(careful(c, "qcow2"), d, "b"), ours: (d) => ours(d, "c", c, sums.compressed) });
    row("compressed qcow2 vs careful", m2.careful ?? [], m2.ours ?? [], "(info)");

    log("raw source");
    const m3 = await measure(work, { "curl+convert": (d) => shell(rawBaseline(r), d, "b"), ours: (d) => ours(d, "r", r, sums.raw) });
    const base4 = m3["curl+convert"] ?? [];
    const us4 = m3.ours ?? [];
    row("raw vs curl+convert -f raw", base4, us4, "≤ 0.90");

    log("peak RSS");
    const m4 = await measure(work, { "1 GiB": (d) => ours(d, "s", small, ""), huge: (d) => ours(d, "h", huge, "") });
    const rss = (xs: Run[]) => median(xs.map((x) => x.maxRssBytes ?? NaN));
    const rssSmall = m4["1 GiB"] ?? [];
    const rssHuge = m4.huge ?? [];
    const rssRatio = rss(rssHuge) / rss(rssSmall);

    const alloc = (xs: Run[]) => median(xs.map((x) => x.allocatedBytes));
    process.stdout.write(
      [
        "| case | baseline | ours | ratio | goal |",
        "| --- | --- | --- | --- | --- |",
        ...rows,
        "",
        `Raw source allocated bytes: ours ${(alloc(us4) / MiB).toFixed(1)} MiB, baseline ${(alloc(base4) / MiB).toFixed(1)} MiB (ratio ${(alloc(us4) / alloc(base4)).toFixed(3)}).`,
        `Peak RSS: ${(rss(rssSmall) / MiB).toFixed(0)} MiB for 1 GiB, ${(rss(rssHuge) / MiB).toFixed(0)} MiB for ${values.quick ? 4 : 10} GiB: ratio **${rssRatio.toFixed(2)}** (goal ≤ 1.10).`,
        `Image: 2 GiB virtual qcow2, ${(qcowBytes / MiB).toFixed(0)} MiB file (${(GiB * 2) / GiB} GiB raw form); ${reps} reps, medians; origin in the bench process on 127.0.0.1; load average ${loadavg()[0]?.toFixed(1)}.`,
      ].join("\n") + "\n",
    );
  } finally {
    await origin.close();
    await rm(work, { recursive: true, force: true });
    await rm(buildDir, { recursive: true, force: true });
  }
}

await main();
