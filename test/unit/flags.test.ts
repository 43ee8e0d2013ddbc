import { test } from "node:test";
import assert from "node:assert/strict";
import { addressFlag, budgetFlags, durationFlag, intFlag, parseFlags, renderHelp, requireFlag, type CommandSpec } from "../../src/cli/flags.js";
import { ConfigError } from "../../src/lib/errors.js";

const flags = {
  dir: { type: "string", value: "DIR", help: "where" },
  every: { type: "string", value: "DUR", default: "40m", help: "how often\n(and when asked)" },
  name: { type: "string", value: "NAME", defaultText: "$NAME", help: "who" },
  dry: { type: "boolean", help: "change nothing" },
} as const;
const spec: CommandSpec<typeof flags> = { name: "demo", synopsis: "--dir DIR [flags]", description: "Does a thing.", flags };

function parsed(argv: string[]) {
  const p = parseFlags(argv, spec);
  assert.ok(p !== "help");
  return p;
}

test("an absent flag takes its default and is not counted as given", () => {
  const p = parsed([]);
  assert.deepEqual(p.values, { dir: undefined, every: "40m", name: undefined, dry: false });
  assert.deepEqual([...p.given], []);
});

test("a given flag wins over its default and is counted as given", () => {
  const p = parsed(["--every", "5m", "--dry", "--dir=/x"]);
  assert.deepEqual(p.values, { dir: "/x", every: "5m", name: undefined, dry: true });
  assert.deepEqual([...p.given].sort(), ["dir", "dry", "every"]);
});

test("--help and -h ask for the help", () => {
  assert.equal(parseFlags(["--help"], spec), "help");
  assert.equal(parseFlags(["-h", "--dry"], spec), "help");
});

const usageErrors: [string, string[], RegExp][] = [
  ["an unknown flag", ["--bogus"], /^Cannot parse flags: unknown flag "--bogus"\nRun "basecache demo --help" for the flags\.$/],
  ["a flag without its value", ["--dir"], /^Cannot parse flags: --dir needs a value/],
  ["a value for a boolean flag", ["--dry=yes"], /^Cannot parse flags: --dry takes no value/],
  ["an argument the command does not take", ["extra"], /^Cannot parse flags: unexpected argument "extra"/],
];
for (const [what, argv, message] of usageErrors) {
  test(`${what} is a usage error that says so`, () => assert.throws(() => parseFlags(argv, spec), (e: unknown) => e instanceof ConfigError && message.test(e.message)));
}

test("the help shows every flag with its value and its default, on the first line of its text", () => {
  const help = renderHelp(spec);
  assert.match(help, /^Usage: basecache demo --dir DIR \[flags\]\n\nDoes a thing\.\n\nFlags:\n/);
  assert.match(help, /\n {2}--every DUR +how often \(default: 40m\)\n {28}\(and when asked\)\n/);
  assert.match(help, /\n {2}--name NAME +who \(default: \$NAME\)\n/);
  assert.match(help, /\n {2}--dir DIR +where\n/);
  assert.match(help, /\n {2}--dry +change nothing\n/);
  assert.match(help, /\n {2}--help +print this help\n$/);
});

test("a required flag falls back to its environment value, else is a usage error", () => {
  assert.equal(requireFlag(spec, "name", undefined, "from-env"), "from-env");
  assert.equal(requireFlag(spec, "name", "given", "from-env"), "given");
  assert.throws(() => requireFlag(spec, "name", "", undefined), (e: unknown) => e instanceof ConfigError && e.message.startsWith("Cannot parse flags: --name is required\n"));
});

const values: [string, () => unknown, unknown][] = [
  ["a duration", () => durationFlag("every", "1h30m"), 5_400_000],
  ["a whole number in range", () => intFlag("n", "64", 1, 64), 64],
  ["an address", () => addressFlag("at", "127.0.0.1:0"), "127.0.0.1:0"],
  ["an empty address, which serves nothing", () => addressFlag("at", ""), undefined],
  ["no budget", () => budgetFlags(undefined, undefined, undefined), undefined],
  ["a budget with the default watermarks", () => budgetFlags("1Gi", undefined, undefined), { limitBytes: 1024 ** 3, highWatermark: 0.9, lowWatermark: 0.8 }],
];
for (const [what, parse, expected] of values) test(`parses ${what}`, () => assert.deepEqual(parse(), expected));

const refused: [string, () => unknown, string][] = [
  ["a bad duration", () => durationFlag("every", "soon"), 'Cannot use --every "soon": expected hours, minutes and seconds such as 24h, 90m or 1h30m'],
  ["a duration below its minimum", () => durationFlag("every", "500ms", 1000), 'Cannot use --every "500ms": expected hours, minutes and seconds such as 24h, 90m or 1h30m'],
  ["a short duration", () => durationFlag("every", "0s", 1000), 'Cannot use --every "0s": at least 1s'],
  ["a number out of range", () => intFlag("n", "0", 1, 64), 'Cannot use --n "0": expected a whole number from 1 to 64'],
  ["a fraction of a number", () => intFlag("n", "1.5", 1, 64), 'Cannot use --n "1.5": expected a whole number from 1 to 64'],
  ["a bad address", () => addressFlag("at", "localhost"), 'Cannot use --at "localhost": expected host:port such as 127.0.0.1:8080 or :8080'],
  ["watermarks without a budget", () => budgetFlags(undefined, "0.5", undefined), "Cannot use --high-watermark or --low-watermark: they need --cache-budget"],
  ["a bad budget", () => budgetFlags("lots", undefined, undefined), 'Cannot use --cache-budget "lots": expected a number with an optional suffix such as Ki, Mi, Gi, k, M or G'],
  ["watermarks out of order", () => budgetFlags("1Gi", "0.5", "0.7"), 'Cannot use --cache-budget "1Gi": expected a fraction in [0, high watermark 0.5]'],
];
for (const [what, parse, message] of refused) {
  test(`refuses ${what} in the house wording`, () => assert.throws(parse, (e: unknown) => e instanceof ConfigError && e.message === message));
}
