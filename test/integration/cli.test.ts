// The CLI as a new user meets it: every command's --help, the defaults it prints being the ones the command
// uses, usage errors that say what is wrong (exit 2), and `fetch --timeout` ending in exit 124 with the cache
// as it was.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseAgentFlags } from "../../src/cli/commands/agent.js";
import { parseControllerFlags } from "../../src/cli/commands/controller.js";
import { parseFetchFlags } from "../../src/cli/commands/fetch.js";
import { parseGcFlags } from "../../src/cli/commands/gc.js";
import { baseNameFor } from "../../src/core/names.js";
import { filesStartingWith, runFetch, startCli } from "../harness/fetch-cli.js";
import { ImageDir } from "../harness/images.js";
import { Origin } from "../harness/origin.js";

let origin: Origin;
let images: ImageDir;
let baseDir: string;

before(async () => {
  origin = await Origin.start();
  images = await ImageDir.create();
  baseDir = await mkdtemp(join(tmpdir(), "basecache-cli-"));
});
after(async () => {
  await origin?.close();
  await images?.cleanup();
  await rm(baseDir, { recursive: true, force: true });
});

/** `--flag value` pairs of every flag whose help shows a plain default (not `$VAR` or prose). */
function shownDefaults(help: string): [string, string][] {
  const out: [string, string][] = [];
  for (const m of help.matchAll(/^ {2}(--[a-z-]+)(?: \S+)? .*\(default: ([^)$ ]*)\)$/gm)) out.push([m[1]!, m[2]!]);
  return out;
}

const commands: { name: string; required: string[]; parse: (argv: string[]) => unknown }[] = [
  { name: "agent", required: ["--node", "n1", "--base-dir", "/b", "--instances-dir", "/i"], parse: (a) => parseAgentFlags(a, {}) },
  { name: "controller", required: [], parse: (a) => parseControllerFlags(a, {}) },
  { name: "gc", required: ["--base-dir", "/b", "--instances-dir", "/i"], parse: (a) => parseGcFlags(a, {}) },
  { name: "fetch", required: ["--base-dir", "/b", "--id", "x", "--url", "http://h/x"], parse: (a) => parseFetchFlags(a, {}) },
];

// Giving an address flag turns off the fallback to a free port, which is the point of that field.
function comparable(parsed: unknown): unknown {
  if (typeof parsed !== "object" || parsed === null) return parsed;
  const { defaultAddrs: _ignored, ...rest } = parsed as Record<string, unknown>;
  return rest;
}

for (const c of commands) {
  test(`basecache ${c.name} --help prints its flags, and each default it shows is the one it uses`, async () => {
    const r = await startCli([c.name, "--help"]);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^Usage: basecache ${c.name} `));
    const defaults = shownDefaults(r.stdout);
    if (c.name !== "fetch") assert.ok(defaults.length > 0, "some defaults are shown");
    for (const [flag, value] of defaults) {
      // The watermarks have their defaults only under a cache budget.
      const base = flag.endsWith("-watermark") ? [...c.required, "--cache-budget", "1Gi"] : c.required;
      assert.deepEqual(comparable(c.parse([...base, flag, value])), comparable(c.parse(base)), `${flag} ${value} is what the command does without it`);
    }
  });
}

test("the agent and the controller serve metrics on :8080 and health on :8081 unless told otherwise", () => {
  const agent = parseAgentFlags(commands[0]!.required, {});
  const controller = parseControllerFlags([], {});
  assert.ok(agent !== "help" && controller !== "help");
  assert.deepEqual([agent.metricsAddr, agent.healthAddr, agent.defaultAddrs], [":8080", ":8081", true]);
  assert.deepEqual([controller.metricsAddr, controller.healthAddr, controller.defaultAddrs], [":8080", ":8081", true]);
  const off = parseAgentFlags([...commands[0]!.required, "--metrics-addr", "", "--health-addr", "127.0.0.1:0"], {});
  assert.ok(off !== "help");
  assert.deepEqual([off.metricsAddr, off.healthAddr, off.defaultAddrs], [undefined, "127.0.0.1:0", false]);
});

const usageErrors: [string[], RegExp][] = [
  [["fetch", "--bogus"], /^basecache fetch: Cannot parse flags: unknown flag "--bogus"\nRun "basecache fetch --help" for the flags\.$/],
  [["agent", "--base-dir", "/b", "--instances-dir", "/i"], /^basecache agent: Cannot parse flags: --node is required\n/],
  [["controller", "--workers", "0"], /^basecache controller: Cannot use --workers "0": expected a whole number from 1 to 64$/],
  [["gc", "--base-dir", "/b", "--instances-dir", "/i", "--retention", "1d"], /^basecache gc: Cannot use --retention "1d": expected hours, minutes and seconds/],
  [["disk", "inspect"], /^basecache disk: Cannot parse flags: give exactly one disk path\n/],
  [["frob"], /^basecache: Cannot run "frob": no such command\n/],
];
for (const [argv, message] of usageErrors) {
  test(`basecache ${argv.join(" ")} is a usage error (exit 2) that says what is wrong`, async () => {
    const r = await startCli(argv);
    assert.equal(r.exitCode, 2, r.stderr);
    assert.match(r.stderr, message);
  });
}

test("a directory flag that names a file, or a path through one, is a usage error (exit 2) that names the flag and the path", async () => {
  const file = await images.file("not-a-dir", "x");
  const dir = await mkdtemp(join(tmpdir(), "basecache-cli-dirs-"));
  try {
    const cases: [string[], string, string][] = [
      [["fetch", "--base-dir", file, "--id", "x", "--url", "http://127.0.0.1:9/x"], "base-dir", `${file}": it is a file`],
      [["fetch", "--base-dir", join(file, "sub"), "--id", "x", "--url", "http://127.0.0.1:9/x"], "base-dir", `${join(file, "sub")}": a component of the path is a file`],
      [["disk", "create", "--base-dir", file, "--id", "x", "--out", join(dir, "d.qcow2")], "base-dir", `${file}": it is a file`],
      [["gc", "--base-dir", file, "--instances-dir", dir], "base-dir", `${file}": it is a file`],
      [["gc", "--base-dir", dir, "--instances-dir", file], "instances-dir", `${file}": it is a file`],
      [["agent", "--node", "n1", "--base-dir", file, "--instances-dir", dir], "base-dir", `${file}": it is a file`],
      [["agent", "--node", "n1", "--base-dir", dir, "--instances-dir", file], "instances-dir", `${file}": it is a file`],
    ];
    for (const [argv, flag, what] of cases) {
      const r = await startCli(argv);
      assert.equal(r.exitCode, 2, `${argv.join(" ")}: ${r.stderr}`);
      assert.ok(r.stderr.includes(`Cannot use --${flag} "${what}, not a directory`), r.stderr);
    }
    // Nothing was created next to the file, nor in the directory.
    assert.deepEqual((await stat(file)).isFile(), true);
    assert.deepEqual(await readdir(dir), []);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("fetch --timeout gives up when the deadline passes: exit 124, reason deadline, the cache as it was", async () => {
  const file = await images.qcow2("slow.qcow2", 16);
  const size = (await stat(file)).size;
  // About a minute of download: the deadline always comes first.
  const url = origin.route("/slow.qcow2", { kind: "slow", chunkBytes: Math.ceil(size / 600), intervalMs: 100, body: { file } });
  const r = await runFetch(["--base-dir", baseDir, "--id", "slow", "--url", url, "--timeout", "3s"]);
  assert.equal(r.code, 124, r.stderr);
  assert.equal(r.json.status, "failed");
  assert.equal(r.json.reason, "deadline");
  assert.match(r.json.message, /^Cannot fetch image "slow": --timeout 3s ran out$/);
  assert.deepEqual(await filesStartingWith(baseDir, baseNameFor("slow")), []);
});
