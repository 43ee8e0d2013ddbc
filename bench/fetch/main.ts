/**
 * bench/fetch: how long does `fetchImage` take end to end (download, hash, decompress, inspect, check, convert,
 * fsync, rename), relative to what a careful person types, measured in the same run on the same loopback
 * origin? How much CPU does it spend against curl and sha256sum? How far is it from the machine's limit (a
 * loopback download of the file plus an O_DIRECT write of the image's data), measured in the same run? The same
 * again with one process spinning on a core throughout (a busy node). And is memory flat in the image size?
 *
 * Run: node --import tsx bench/fetch/main.ts [--reps N] [--rss-reps N] [--quick] [--quiet | --hog]
 * By default one quiet pass and one pass under the hog; --quiet or --hog runs only that one. Peak RSS is
 * measured in the first quiet pass only (a CPU hog does not change what the fetch holds in memory).
 * Ours runs compiled (tsc into .tmp/), as the container image runs it.
 * It needs about 16 GiB of free space under $TMPDIR (sparse files; ~4 GiB really written).
 */
import { execa } from "execa";
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, rm, stat } from "node:fs/promises";
import { cpus, loadavg, release, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { Origin } from "../../test/harness/origin.js";
import { processCpuSeconds, reapedChildrenCpuSeconds } from "./cpu.js";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
// NOTE: the container runs compiled JavaScript, so ours is measured compiled too: tsx would add half a second
// of start-up to every fetch that no deployment pays. Built under the repo so that node_modules resolve.
const buildDir = join(repoRoot, ".tmp", `bench-fetch-${process.pid}`);
const child = join(buildDir, "bench", "fetch", "child.js");
const { values } = parseArgs({
  options: {
    reps: { type: "string", default: "3" },
    quick: { type: "boolean", default: false },
    quiet: { type: "boolean", default: false },
    hog: { type: "boolean", default: false },
    "rss-reps": { type: "string", default: "1" },
  },
});
const reps = Number(values.reps);
// Peak RSS does not move with the load, and the 10 GiB fetch is the longest of the bench: one round by default.
const rssReps = Number(values["rss-reps"]);
const log = (s: string) => process.stderr.write(s + "\n");

/** Wall and CPU (user + sys, the process and every process it waited for) seconds of one step of a run. */
interface Step {
  seconds: number;
  cpu: number;
}

interface Run extends Step {
  /** Ours only: seconds until the conversion started (download, hash, inspection and checks done). */
  untilConvert?: number;
  /** Ours only: CPU seconds until the conversion started, its process and the tools it ran. */
  cpuUntilConvert?: number;
  /** Ours only: CPU seconds at the end of its own threads, and of the tools it ran (qemu-img, xz, zstd). */
  cpuSelf?: number;
  cpuTools?: number;
  /** Shell lines: each step of the line, by name. */
  steps?: Record<string, Step>;
  allocatedBytes?: number;
  maxRssBytes?: number;
}

interface Images {
  raw: string;
  qcow2: string;
  compressed: string;
  xz: string;
  zstd: string;
  huge: string;
  small: string;
}

/**
 * Builds the realistic image: 2 GiB virtual, ~700 MiB of data in 50 MiB runs, allocated zero clusters, holes;
 * then its compressed forms.
 */
async function buildImages(dir: string, quick: boolean): Promise<Images> {
  const runs = quick ? 4 : 14;
  // The data is the system's own files as tar streams them (binaries, libraries, text), as a root filesystem
  // holds: xz and zstd compress it about 5x and 4x. Random data would not compress, and the xz and zstd rows
  // would measure a copy instead of a decoder.
  const data = join(dir, "data.bin");
  await execa("bash", ["-c", `tar -C / -cf - usr 2>/dev/null | head -c ${runs * 50 * MiB} > ${data}`], { reject: false });
  if ((await stat(data)).size !== runs * 50 * MiB) throw new Error(`tar of /usr gave less than ${runs * 50} MiB`);
  const raw = join(dir, "disk.raw");
  await execa("qemu-img", ["create", "-q", "-f", "raw", raw, "2G"]);
  for (let i = 0; i < runs; i++) {
    // 50 MiB runs spread over the first 1.75 GiB, from 1 MiB on: a tar header at byte 0 would make it an archive.
    await execa("dd", [`if=${data}`, `of=${raw}`, "bs=1M", "count=50", `skip=${i * 50}`, `seek=${1 + i * 120}`, "conv=notrunc", "status=none"]);
  }
  await rm(data);
  const qcow2 = join(dir, "disk.qcow2");
  await execa("qemu-img", ["convert", "-q", "-f", "raw", "-O", "qcow2", raw, qcow2]);
  // Allocated zero clusters: write data, then zero it without unmapping, so the clusters keep their host
  // offsets and carry the qcow2 v3 zero flag (a plain `write -z` on unwritten clusters allocates nothing).
  await execa("qemu-io", ["-f", "qcow2", "-c", "write -P 0xab 1800M 100M", "-c", "write -z 1800M 100M", qcow2]);
  const compressed = join(dir, "disk-c.qcow2");
  const xz = `${qcow2}.xz`;
  const zstd = `${qcow2}.zst`;
  // Side by side: xz -3 makes about 3 MB/s here, the longest step of the setup.
  await Promise.all([
    execa("qemu-img", ["convert", "-q", "-c", "-f", "qcow2", "-O", "qcow2", qcow2, compressed]),
    execa("xz", ["-T1", "-3", "-k", "-q", qcow2]),
    execa("zstd", ["-3", "-q", "-k", qcow2, "-o", zstd]),
  ]);
  const huge = join(dir, "huge.raw");
  const small = join(dir, "small.raw");
  await execa("qemu-img", ["create", "-q", "-f", "raw", huge, quick ? "4G" : "10G"]);
  await execa("qemu-img", ["create", "-q", "-f", "raw", small, "1G"]);
  for (const f of [huge, small]) await execa("dd", ["if=/dev/urandom", `of=${f}`, "bs=1M", "count=64", "conv=notrunc", "status=none"]);
  return { raw, qcow2, compressed, xz, zstd, huge, small };
}

/** Times `fn` and counts the CPU of the processes it started and waited for (nothing else reaps meanwhile). */
async function timed<T>(fn: () => Promise<T>): Promise<Step & { value: T }> {
  const c0 = reapedChildrenCpuSeconds();
  const t0 = performance.now();
  const value = await fn();
  return { seconds: (performance.now() - t0) / 1000, cpu: reapedChildrenCpuSeconds() - c0, value };
}

/** Our fetch in a fresh process, timed from the parent like the shell baselines, process start included. */
async function ours(baseDir: string, id: string, url: string, checksum: string): Promise<Run> {
  const t = await timed(() => execa(process.execPath, [child, baseDir, id, url, checksum], { env: { BASECACHE_LOG_LEVEL: "warn" } }));
  const inner = JSON.parse(t.value.stdout) as Run & { startupSeconds: number; cpuSelf: number; cpuChildren: number };
  return {
    seconds: t.seconds,
    cpu: t.cpu,
    untilConvert: inner.untilConvert === undefined ? undefined : inner.untilConvert + inner.startupSeconds,
    ...(inner.cpuUntilConvert === undefined ? {} : { cpuUntilConvert: inner.cpuUntilConvert }),
    cpuSelf: inner.cpuSelf,
    cpuTools: inner.cpuChildren,
    ...(inner.allocatedBytes === undefined ? {} : { allocatedBytes: inner.allocatedBytes }),
    ...(inner.maxRssBytes === undefined ? {} : { maxRssBytes: inner.maxRssBytes }),
  };
}

async function sha256Of(path: string): Promise<string> {
  const { stdout } = await execa("sha256sum", [path]);
  return `sha256:${stdout.split(" ")[0] ?? ""}`;
}

/**
 * A shell line, step by step (`a && b && c` run as one `bash -c` per step), so that each step's wall and CPU
 * are known: the line's time is their sum, plus a bash start per step (milliseconds).
 */
async function shell(steps: [string, string][], cwd: string, out?: string): Promise<Run> {
  const run: Run = { seconds: 0, cpu: 0, steps: {} };
  for (const [name, script] of steps) {
    const t = await timed(() => execa("bash", ["-c", `set -o pipefail; ${script}`], { cwd }));
    run.seconds += t.seconds;
    run.cpu += t.cpu;
    run.steps = { ...run.steps, [name]: { seconds: t.seconds, cpu: t.cpu } };
  }
  if (out) run.allocatedBytes = (await stat(join(cwd, out))).blocks * 512;
  return run;
}

/** The careful line: download (with its decoder, for a compressed file), sync, sha256sum, convert. */
const careful = (download: string, hash = true): [string, string][] => [
  ["download", download],
  ["sync", "sync"],
  ...(hash ? [["sha256sum", "sha256sum p.part >/dev/null"] as [string, string]] : []),
  ["convert", "qemu-img convert -t none -f qcow2 -O raw p.part b.tmp && mv b.tmp b"],
];
// The issue's raw baseline, as it gives it: curl, then qemu-img convert -f raw -O raw (default cache, no fsync).
const rawBaseline = (url: string): [string, string][] => [
  ["download", `curl -sf -o p.part ${url}`],
  ["convert", "qemu-img convert -f raw -O raw p.part b.tmp && mv b.tmp b"],
];
// The CPU baseline of the raw row: curl writing the file, then sha256sum of it.
const curlSha = (url: string): [string, string][] => [
  ["download", `curl -sf -o p.part ${url}`],
  ["sha256sum", "sha256sum p.part >/dev/null"],
];
/**
 * The machine's limit: the served file over loopback into /dev/null, plus the image's data written with
 * O_DIRECT (dd skips the all-zero 4 MiB blocks, as a sparse base does: about 730 MiB, the 700 MiB of data
 * rounded to whole blocks).
 */
const limitLine = (url: string, raw: string): [string, string][] => [
  ["download", `curl -sf -o /dev/null ${url}`],
  ["write", `dd if=${raw} of=w.out oflag=direct bs=4M conv=sparse status=none`],
];

function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}

/** Runs each variant once per round, interleaved, so that a burst of load on the shared machine hits all alike. */
async function measure(work: string, variants: Record<string, (dir: string) => Promise<Run>>, rounds = reps): Promise<Record<string, Run[]>> {
  const out: Record<string, Run[]> = Object.fromEntries(Object.keys(variants).map((k) => [k, [] as Run[]]));
  for (let i = 0; i < rounds; i++) {
    for (const [label, fn] of Object.entries(variants)) {
      const dir = join(work, `${label}-${i}`);
      await mkdir(dir, { recursive: true });
      await execa("sync");
      out[label]?.push(await fn(dir));
      await rm(dir, { recursive: true, force: true });
    }
  }
  for (const [label, runs] of Object.entries(out)) {
    const at = (f: (r: Run) => number | undefined) => runs.map((r) => f(r)?.toFixed(2) ?? "-").join(" ");
    const phases = runs.some((r) => r.cpuSelf !== undefined)
      ? ` (conversion started at ${at((r) => r.untilConvert)} s, CPU until then ${at((r) => r.cpuUntilConvert)} s; CPU of node ${at((r) => r.cpuSelf)} s, of its tools ${at((r) => r.cpuTools)} s)`
      : "";
    const steps = Object.keys(runs[0]?.steps ?? {})
      .map((s) => `${s} ${runs.map((r) => r.steps?.[s]?.seconds.toFixed(2) ?? "-").join(" ")}`)
      .join("; ");
    log(`  ${label}: ${runs.map((r) => r.seconds.toFixed(2)).join(" ")} s, CPU ${runs.map((r) => r.cpu.toFixed(2)).join(" ")} s${phases}${steps ? ` [${steps}]` : ""}`);
  }
  return out;
}

/**
 * One process spinning on a core for the whole pass, as on a busy node; killed after. Under setpriv's parent-death
 * signal and a CPU limit, so that it cannot outlive a bench that dies.
 */
function startHog(): { pid: number; stop: () => Promise<number> } {
  const p = spawn("setpriv", ["--pdeathsig", "KILL", "--", "prlimit", "--cpu=3600", "--", "sh", "-c", "while :; do :; done"], { stdio: "ignore" });
  const exited = new Promise<void>((resolve) => p.once("exit", () => resolve()));
  const pid = p.pid ?? 0;
  return {
    pid,
    stop: async () => {
      // setpriv and prlimit exec the shell: one process, one pid. Its CPU is read before it is reaped.
      const cpu = processCpuSeconds(pid);
      p.kill("SIGKILL");
      await exited;
      return cpu;
    },
  };
}

const s = (x: number) => `${x.toFixed(2)} s`;
const med = (xs: Run[] | undefined, f: (r: Run) => number | undefined) => median((xs ?? []).map((r) => f(r) ?? NaN));
const wall = (r: Run) => r.seconds;
const cpu = (r: Run) => r.cpu;
const step = (name: string, f: (x: Step) => number, ...more: string[]) => (r: Run) =>
  [name, ...more].reduce((sum, n) => sum + (r.steps?.[n] ? f(r.steps[n]) : NaN), 0);

interface Source {
  name: string;
  url: string;
  /** Bytes the origin serves. */
  bytes: number;
}

/** One pass over every case: the markdown it prints. */
async function pass(name: "quiet" | "hog", work: string, img: Images, urls: Record<keyof Images, string>, sums: Record<string, string>, withRss: boolean): Promise<string> {
  const size = async (f: string) => (await stat(f)).size;
  const src: Record<string, Source> = {
    qcow2: { name: "qcow2", url: urls.qcow2, bytes: await size(img.qcow2) },
    compressed: { name: "compressed qcow2", url: urls.compressed, bytes: await size(img.compressed) },
    raw: { name: "raw", url: urls.raw, bytes: await size(img.raw) },
    xz: { name: "qcow2.xz", url: urls.xz, bytes: await size(img.xz) },
    zstd: { name: "qcow2.zst", url: urls.zstd, bytes: await size(img.zstd) },
  };
  const hog = name === "hog" ? startHog() : undefined;
  const load0 = loadavg()[0] ?? NaN;
  const t0 = performance.now();
  const m: Record<string, Record<string, Run[]>> = {};
  try {
    log(`${name} pass${hog ? ` (hog pid ${hog.pid})` : ""}`);
    log("qcow2 source");
    m.qcow2 = await measure(work, {
      careful: (d) => shell(careful(`curl -sf -o p.part ${urls.qcow2}`), d, "b"),
      "careful-nohash": (d) => shell(careful(`curl -sf -o p.part ${urls.qcow2}`, false), d, "b"),
      ours: (d) => ours(d, "q", urls.qcow2, sums.qcow2 ?? ""),
      limit: (d) => shell(limitLine(urls.qcow2, img.raw), d),
    });
    log("compressed qcow2 source");
    m.compressed = await measure(work, {
      careful: (d) => shell(careful(`curl -sf -o p.part ${urls.compressed}`), d, "b"),
      ours: (d) => ours(d, "c", urls.compressed, sums.compressed ?? ""),
      limit: (d) => shell(limitLine(urls.compressed, img.raw), d),
    });
    log("raw source");
    m.raw = await measure(work, {
      careful: (d) => shell(rawBaseline(urls.raw), d, "b"),
      "curl+sha256sum": (d) => shell(curlSha(urls.raw), d),
      ours: (d) => ours(d, "r", urls.raw, sums.raw ?? ""),
      limit: (d) => shell(limitLine(urls.raw, img.raw), d),
    });
    // The checksum of a compressed source covers the decoded image (docs/operations.md): the qcow2's.
    log("qcow2.xz source");
    m.xz = await measure(work, {
      careful: (d) => shell(careful(`curl -sf ${urls.xz} | xz -dc > p.part`), d, "b"),
      ours: (d) => ours(d, "x", urls.xz, sums.qcow2 ?? ""),
      limit: (d) => shell(limitLine(urls.xz, img.raw), d),
    });
    log("qcow2.zst source");
    m.zstd = await measure(work, {
      careful: (d) => shell(careful(`curl -sf ${urls.zstd} | zstd -dcq > p.part`), d, "b"),
      ours: (d) => ours(d, "z", urls.zstd, sums.qcow2 ?? ""),
      limit: (d) => shell(limitLine(urls.zstd, img.raw), d),
    });
    if (withRss) {
      log("peak RSS");
      m.rss = await measure(work, { "1 GiB": (d) => ours(d, "s", urls.small, ""), huge: (d) => ours(d, "h", urls.huge, "") }, rssReps);
    }
  } finally {
    const hogCpu = await hog?.stop();
    if (hogCpu !== undefined) log(`hog: ${hogCpu.toFixed(0)} CPU s over ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  }
  const minutes = (performance.now() - t0) / 60000;
  const load1 = loadavg()[0] ?? NaN;

  const times: string[] = [];
  /** Each goal of the issue with its measured value, for the verdict line. */
  const goals: string[] = [];
  const goal = (what: string, value: number, most: number) => goals.push(`${what} ${value.toFixed(2)} (≤ ${most.toFixed(2)}: ${value <= most ? "met" : "not met"})`);
  const row = (label: string, base: Run[] | undefined, us: Run[] | undefined, most?: number, short?: string) => {
    const b = med(base, wall);
    const o = med(us, wall);
    times.push(`| ${label} | ${s(b)} | ${s(o)} | **${(o / b).toFixed(2)}** | ${most === undefined ? "(info)" : `≤ ${most.toFixed(2)}`} |`);
    if (most !== undefined && short) goal(short, o / b, most);
  };
  row("qcow2 vs curl+sync+sha256sum+convert", m.qcow2?.careful, m.qcow2?.ours, 0.5, "qcow2/careful");
  row("qcow2 vs curl+sync+convert (no hash)", m.qcow2?.["careful-nohash"], m.qcow2?.ours, 0.9, "qcow2/unverified");
  row("compressed qcow2 vs careful", m.compressed?.careful, m.compressed?.ours);
  row("raw vs curl+convert -f raw", m.raw?.careful, m.raw?.ours, 0.6, "raw/curl+convert");
  row("qcow2.xz vs curl\\|xz -dc+sync+sha256sum+convert", m.xz?.careful, m.xz?.ours);
  row("qcow2.zst vs curl\\|zstd -dc+sync+sha256sum+convert", m.zstd?.careful, m.zstd?.ours);

  const limits: string[] = [];
  const cpuRows: string[] = [];
  const phaseRows: string[] = [];
  for (const [key, so] of Object.entries(src)) {
    const r = m[key];
    const limit = med(r?.limit, wall);
    const o = med(r?.ours, wall);
    limits.push(`| ${so.name} | ${s(med(r?.limit, step("download", wall)))} | ${s(med(r?.limit, step("write", wall)))} | ${s(limit)} | ${s(o)} | **${(o / limit).toFixed(2)}** |`);
    goal(`${so.name}/limit`, o / limit, 2);
    // Download + hash (+ decode): ours until its conversion starts (inspections included) against curl writing
    // the file (through the decoder) and sha256sum of it; a raw source has no conversion, so its whole fetch.
    const oursDl = key === "raw" ? med(r?.ours, cpu) : med(r?.ours, (x) => x.cpuUntilConvert);
    const baseDl = key === "raw" ? med(r?.["curl+sha256sum"], cpu) : med(r?.careful, step("download", cpu, "sha256sum"));
    if (key !== "raw") {
      const until = med(r?.ours, (x) => x.untilConvert);
      const steps = ["download", "sync", "sha256sum", "convert"].map((n) => s(med(r?.careful, step(n, wall))));
      phaseRows.push(`| ${so.name} | ${s(until)} | ${s(med(r?.ours, (x) => (x.untilConvert === undefined ? undefined : x.seconds - x.untilConvert)))} | ${steps.join(" | ")} |`);
    }
    const gib = so.bytes / GiB;
    const oursAll = med(r?.ours, cpu);
    const carefulAll = med(r?.careful, cpu);
    if (key === "qcow2" || key === "raw") goal(`${so.name} CPU/(curl+sha256sum)`, oursDl / baseDl, 1.3);
    cpuRows.push(
      `| ${so.name} | ${(so.bytes / MiB).toFixed(0)} MiB | ${s(oursDl)} (${(oursDl / gib).toFixed(2)}/GiB) | ${s(baseDl)} (${(baseDl / gib).toFixed(2)}/GiB) | **${(oursDl / baseDl).toFixed(2)}** | ${s(oursAll)} | ${s(carefulAll)} | ${(oursAll / carefulAll).toFixed(2)} |`,
    );
  }

  const lines = [
    `### ${name === "hog" ? "Under the hog (one process spinning on a core throughout)" : "Quiet"}`,
    "",
    `${reps} round${reps === 1 ? "" : "s"}, medians; ${minutes.toFixed(1)} minutes; load average ${load0.toFixed(1)} at the start, ${load1.toFixed(1)} at the end.`,
    "",
    "| case | baseline | ours | ratio | goal |",
    "| --- | --- | --- | --- | --- |",
    ...times,
    "",
    "The machine's limit: the file over loopback to /dev/null plus the image's data written with O_DIRECT (goal: ours ≤ 2x).",
    "",
    "| source | download | O_DIRECT write | limit | ours | ours / limit |",
    "| --- | --- | --- | --- | --- | --- |",
    ...limits,
    "",
    "Where the time goes: ours until its conversion starts (process start, download, hash, inspections) and from then on (conversion, digest of the base, fsync, rename), against the careful line's steps.",
    "",
    "| source | ours until conversion | ours from conversion on | careful: download | sync | sha256sum | convert |",
    "| --- | --- | --- | --- | --- | --- | --- |",
    ...phaseRows,
    "",
    "CPU (user + sys, every process) of download + hash: ours until the conversion starts (raw: the whole fetch) vs curl (through the decoder) + sha256sum in the same run (goal ≤ 1.3 for qcow2 and raw); per GiB served.",
    "",
    "| source | served | ours, download + hash | curl + sha256sum | ratio | ours, whole fetch | careful line | ratio |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ...cpuRows,
  ];
  const rawAlloc = (xs: Run[] | undefined) => med(xs, (x) => x.allocatedBytes);
  lines.push("", `Raw source allocated bytes: ours ${(rawAlloc(m.raw?.ours) / MiB).toFixed(1)} MiB, baseline ${(rawAlloc(m.raw?.careful) / MiB).toFixed(1)} MiB (ratio ${(rawAlloc(m.raw?.ours) / rawAlloc(m.raw?.careful)).toFixed(3)}).`);
  if (m.rss) {
    const rss = (xs: Run[] | undefined) => med(xs, (x) => x.maxRssBytes);
    const small = rss(m.rss["1 GiB"]);
    const huge = rss(m.rss.huge);
    lines.push(`Peak RSS (${rssReps} round${rssReps === 1 ? "" : "s"}): ${(small / MiB).toFixed(0)} MiB for 1 GiB, ${(huge / MiB).toFixed(0)} MiB for ${values.quick ? 4 : 10} GiB: ratio **${(huge / small).toFixed(2)}** (goal ≤ 1.10).`);
  }
  lines.push("", `Goals: ${goals.join("; ")}.`);
  return lines.join("\n") + "\n";
}

async function main(): Promise<void> {
  const passes: ("quiet" | "hog")[] = values.hog ? ["hog"] : values.quiet ? ["quiet"] : ["quiet", "hog"];
  const tck = (await execa("getconf", ["CLK_TCK"])).stdout.trim();
  if (tck !== (process.env.BENCH_CLK_TCK ?? "100")) throw new Error(`CLK_TCK is ${tck}: run with BENCH_CLK_TCK=${tck}`);
  const work = await mkdtemp(join(tmpdir(), "basecache-bench-"));
  const origin = await Origin.start();
  try {
    log("Compiling basecache");
    await execa("npx", ["tsc", "-p", "tsconfig.json", "--outDir", buildDir, "--sourceMap", "false"], { cwd: repoRoot });
    log("Building images");
    const tb = performance.now();
    const img = await buildImages(work, values.quick);
    log(`  ${((performance.now() - tb) / 1000).toFixed(0)} s`);
    const urls = {
      qcow2: origin.serve("/disk.qcow2", { file: img.qcow2 }),
      compressed: origin.serve("/disk-c.qcow2", { file: img.compressed }),
      raw: origin.serve("/disk.raw", { file: img.raw }),
      xz: origin.serve("/disk.qcow2.xz", { file: img.xz }),
      zstd: origin.serve("/disk.qcow2.zst", { file: img.zstd }),
      huge: origin.serve("/huge.raw", { file: img.huge }),
      small: origin.serve("/small.raw", { file: img.small }),
    };
    // Ours verifies the checksum it is given, as the agent does when an ImageCache names one.
    const sums = { qcow2: await sha256Of(img.qcow2), compressed: await sha256Of(img.compressed), raw: await sha256Of(img.raw) };
    const mib = async (f: string) => `${((await stat(f)).size / MiB).toFixed(0)} MiB`;
    const versions = await Promise.all([
      execa("qemu-img", ["--version"]).then((r) => r.stdout.split("\n")[0] ?? ""),
      execa("curl", ["--version"]).then((r) => (r.stdout.split(" ")[1] ?? "") + " curl"),
      execa("xz", ["--version"]).then((r) => r.stdout.split("\n")[0] ?? ""),
      execa("zstd", ["--version"]).then((r) => r.stdout.replace(/^\*+ /, "").replace(/, by.*$/, "")),
    ]);
    const header = [
      `Image: 2 GiB virtual qcow2, ${await mib(img.qcow2)} file (its raw form 2 GiB, ${await mib(img.raw)} served); internally compressed qcow2 ${await mib(img.compressed)}; \`xz -T1 -3\` ${await mib(img.xz)}; \`zstd -3\` ${await mib(img.zstd)}.`,
      `Machine: ${cpus().length} CPUs, kernel ${release()}, Node ${process.version}, ${versions.join(", ")}; origin in the bench process on 127.0.0.1; work dir ${work}.`,
      "",
    ];
    process.stdout.write(header.join("\n") + "\n");
    for (const [i, p] of passes.entries()) process.stdout.write((await pass(p, work, img, urls, sums, i === 0 && p === "quiet")) + "\n");
  } finally {
    await origin.close();
    await rm(work, { recursive: true, force: true });
    await rm(buildDir, { recursive: true, force: true });
  }
}

await main();
