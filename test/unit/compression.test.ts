import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  DecompressEnv,
  DecompressSizing,
  detectCompression,
  evaluateDecompressorExit,
  parseDecompressOverrides,
  planDecompressLimits,
  planDecompressor,
  type DecompressorExit,
} from "../../src/core/compression.js";

const MiB = 1024 * 1024;
const bytes = (...b: number[]) => Uint8Array.from(b);

test("the compression comes from the magic bytes alone", () => {
  const table: [string, Uint8Array, string | undefined][] = [
    ["gzip (deflate)", bytes(0x1f, 0x8b, 0x08, 0x00), "gzip"],
    ["1f 8b with a method gzip never defined", bytes(0x1f, 0x8b, 0x07, 0x00), undefined],
    ["xz stream header", bytes(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0x00), "xz"],
    ["xz magic cut short", bytes(0xfd, 0x37, 0x7a, 0x58, 0x5a), undefined],
    ["lzma-alone is not xz", bytes(0x5d, 0x00, 0x00, 0x80, 0x00), undefined],
    ["zstd frame", bytes(0x28, 0xb5, 0x2f, 0xfd, 0x04), "zstd"],
    ["zstd skippable frame first (pzstd)", bytes(0x50, 0x2a, 0x4d, 0x18, 0x04), "zstd"],
    ["last skippable magic", bytes(0x5f, 0x2a, 0x4d, 0x18), "zstd"],
    ["bzip2 is not decoded", bytes(0x42, 0x5a, 0x68, 0x39), undefined],
    ["qcow2", bytes(0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3), undefined],
    ["empty", bytes(), undefined],
  ];
  for (const [what, head, want] of table) assert.equal(detectCompression(head), want, what);
});

test("the CPU bound is a minute plus the largest output at 8 MiB/s, the wall clock twice it", () => {
  const table: [string, number | undefined, number][] = [
    ["1 GiB limit", 1024 * MiB, 60 + 128],
    ["no output allowed", 0, 60],
    ["no size limit: sized for 1 TiB", undefined, 60 + 131072],
  ];
  for (const [what, max, seconds] of table) {
    const l = planDecompressLimits(max);
    assert.equal(l.cpuSeconds, seconds, what);
    assert.equal(l.timeoutMs, 2 * seconds * 1000, what);
    assert.equal(l.memoryBytes, DecompressSizing.memoryBytes, what);
    assert.equal(l.addressSpaceBytes, DecompressSizing.memoryBytes + DecompressSizing.programBytes, what);
  }
  fc.assert(
    fc.property(fc.nat({ max: 2 ** 44 }), fc.nat({ max: 2 ** 40 }), (a, more) => {
      assert.ok(planDecompressLimits(a + more).cpuSeconds >= planDecompressLimits(a).cpuSeconds);
    }),
  );
});

test("overrides replace the memory and the CPU bound", () => {
  const l = planDecompressLimits(1024 * MiB, { memoryBytes: 16 * MiB, seconds: 5 });
  assert.deepEqual(l, { memoryBytes: 16 * MiB, addressSpaceBytes: 16 * MiB + DecompressSizing.programBytes, cpuSeconds: 5, timeoutMs: 10_000 });
  const table: [Record<string, string>, object | RegExp][] = [
    [{}, {}],
    [{ [DecompressEnv.memory]: "", [DecompressEnv.seconds]: "" }, {}],
    [{ [DecompressEnv.memory]: String(64 * MiB) }, { memoryBytes: 64 * MiB }],
    [{ [DecompressEnv.seconds]: "30" }, { seconds: 30 }],
    [{ [DecompressEnv.memory]: "64MiB" }, /BASECACHE_DECOMPRESS_MEMORY="64MiB" is not a whole number/],
    [{ [DecompressEnv.memory]: "1000" }, /at least 1048576/],
    [{ [DecompressEnv.seconds]: "0" }, /BASECACHE_DECOMPRESS_SECONDS="0"/],
  ];
  for (const [env, want] of table) {
    const got = parseDecompressOverrides(env);
    if (want instanceof RegExp) assert.match("error" in got ? got.error : "", want, JSON.stringify(env));
    else assert.deepEqual(got, want, JSON.stringify(env));
  }
});

test("xz and zstd run under prlimit with their decoder memory capped, reading only their own format", () => {
  const l = planDecompressLimits(1024 * MiB, { memoryBytes: 32 * MiB });
  const xz = planDecompressor("xz", l);
  assert.deepEqual(xz.argv.slice(0, 4), ["prlimit", `--as=${l.addressSpaceBytes}`, `--cpu=${l.cpuSeconds}`, "--"]);
  assert.equal(xz.argv[4], "xz");
  for (const a of ["--decompress", "--stdout", "--format=xz", "--threads=1", `--memlimit-decompress=${32 * MiB}`]) assert.ok(xz.argv.includes(a), a);
  const zstd = planDecompressor("zstd", l);
  assert.equal(zstd.argv[4], "zstd");
  for (const a of ["--decompress", "--stdout", "--format=zstd", `--memory=${32 * MiB}`]) assert.ok(zstd.argv.includes(a), a);
  // Every argument is fixed: no file name, nothing from the source.
  assert.ok(![...xz.argv, ...zstd.argv].some((a) => a.includes("/")));
});

test("a decompressor's exit: done, the stream's fault, or the tool's", () => {
  const limits = planDecompressLimits(64 * MiB, { memoryBytes: 16 * MiB });
  const exit = (e: Partial<DecompressorExit>): DecompressorExit => ({ tool: "xz", exitCode: 0, signal: null, timedOut: false, stderrTail: "", ...e });
  const table: [string, DecompressorExit, string, RegExp?][] = [
    ["clean exit", exit({}), "ok"],
    ["xz truncated", exit({ exitCode: 1, stderrTail: "xz: (stdin): Unexpected end of input\n" }), "corrupt", /xz stream is truncated or corrupt \(xz exited 1: xz: \(stdin\): Unexpected end of input\)/],
    ["xz corrupt", exit({ exitCode: 1, stderrTail: "xz: (stdin): Compressed data is corrupt\n" }), "corrupt", /Compressed data is corrupt/],
    ["zstd truncated", exit({ tool: "zstd", exitCode: 1, stderrTail: "/*stdin*\\ : Read error (39) : premature end \n" }), "corrupt", /zstd stream is truncated or corrupt.*premature end/],
    ["xz warning exit 2 is not success", exit({ exitCode: 2, stderrTail: "xz: (stdin): Unsupported type of integrity check; not verifying file integrity" }), "corrupt", /integrity/],
    [
      "xz dictionary over the memory limit",
      exit({ exitCode: 1, stderrTail: "xz: (stdin): Memory usage limit reached\nxz: 65 MiB of memory is required. The limit is 16 MiB.\n" }),
      "resource-limit",
      /needs more memory to decode than the limit of 16777216 bytes: xz: \(stdin\): Memory usage limit reached; xz: 65 MiB/,
    ],
    [
      "zstd window over the memory limit",
      exit({ tool: "zstd", exitCode: 1, stderrTail: "x : Decoding error (36) : Frame requires too much memory for decoding \nx : Window size larger than maximum : 134217728 > 16777216 \nx : Use --long=27 or --memory=128MB \n" }),
      "resource-limit",
      /Frame requires too much memory for decoding; x : Window size larger than maximum : 134217728 > 16777216$/,
    ],
    ["CPU limit", exit({ exitCode: null, signal: "SIGXCPU" }), "resource-limit", /stopped by SIGXCPU \(limits: 16777216 bytes of decoder memory, 68 s of CPU, 136 s of wall-clock time\)/],
    ["wall clock", exit({ exitCode: null, signal: "SIGKILL", timedOut: true }), "resource-limit", /ran longer than its bound/],
    ["address space: allocation fails", exit({ exitCode: 1, stderrTail: "xz: Cannot allocate memory" }), "resource-limit", /Cannot allocate memory/],
    ["tool missing", exit({ exitCode: 127, stderrTail: "prlimit: failed to execute xz: No such file or directory" }), "tool", /cannot run xz \(exit 127\)/],
    ["killed by someone else", exit({ exitCode: null, signal: "SIGTERM" }), "tool", /killed by SIGTERM/],
  ];
  for (const [what, e, want, message] of table) {
    const v = evaluateDecompressorExit(e, limits);
    const got = v.ok ? "ok" : v.fault === "tool" ? "tool" : v.reason;
    assert.equal(got, want, what);
    if (message && !v.ok) assert.match(v.message, message, what);
  }
});
