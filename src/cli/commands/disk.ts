/**
 * `basecache disk create --base-dir DIR --id ID --out PATH [--size SIZE] [--copy] [--json]`: a qcow2 overlay
 * backed by the raw base (or a full raw copy with --copy).
 * `basecache disk inspect PATH [--format qcow2|raw] [--json]`: which base an instance disk uses.
 */
import { dirname, resolve } from "node:path";
import { formatBytes } from "../../core/quantity.js";
import { ConfigError } from "../../lib/errors.js";
import { ExitCode } from "../../lib/exit.js";
import { readSidecar } from "../../image/base-dir.js";
import { createInstanceDisk, inspectInstanceDisk } from "../../image/instance-disk.js";
import type { Command, CommandContext } from "../command.js";
import { checkDirFlags } from "../dir-flag.js";
import { bytesFlag, parseFlags, renderHelp, requireFlag, usageError, type CommandSpec } from "../flags.js";

const createFlags = {
  "base-dir": { type: "string", value: "DIR", help: "the base dir (`_base`); required" },
  id: { type: "string", value: "ID", help: "the image id of the base; required" },
  out: { type: "string", value: "PATH", help: "the instance disk to create; required" },
  size: { type: "string", value: "SIZE", help: "the disk's virtual size: bytes or 10Gi; never smaller than the base" },
  copy: { type: "boolean", help: "a full raw copy instead of an overlay (reflink where the filesystem allows)" },
  json: { type: "boolean", help: "print one JSON object with the disk" },
} as const;

const createSpec: CommandSpec<typeof createFlags> = {
  name: "disk create",
  synopsis: "--base-dir DIR --id ID --out PATH [flags]",
  description: "Makes a qcow2 overlay backed by the base of ID (backing format raw), grown to SIZE when given. For an image with an updatePolicy, the base is its current version on this node (the one the agent's `<sha1(ID)>.current` names).",
  flags: createFlags,
};

const inspectFlags = {
  format: { type: "string", value: "qcow2|raw", help: "the disk's format, when known" },
  json: { type: "boolean", help: "print one JSON object with what the header says" },
} as const;

const inspectSpec: CommandSpec<typeof inspectFlags> = {
  name: "disk inspect",
  synopsis: "PATH [flags]",
  description: "Prints which base an instance disk uses, read from its header (qemu-img never probes the format), and the image and version that base holds, from its sidecar.",
  flags: inspectFlags,
  positionals: true,
};

const usage = `Usage: basecache disk create --base-dir DIR --id ID --out PATH [--size SIZE] [--copy] [--json]
       basecache disk inspect PATH [--format qcow2|raw] [--json]

create   makes a qcow2 overlay backed by the base of ID (backing format raw), grown to SIZE when given;
         --copy makes a full raw copy instead (reflink where the filesystem allows).
inspect  prints which base an instance disk uses, read from its header.

Run "basecache disk create --help" or "basecache disk inspect --help" for their flags.
`;

async function create(argv: string[], ctx: CommandContext): Promise<ExitCode> {
  const parsed = parseFlags(argv, createSpec);
  if (parsed === "help") return help(ctx, renderHelp(createSpec));
  const v = parsed.values;
  const size = v.size === undefined ? undefined : bytesFlag("size", v.size);
  const baseDir = resolve(requireFlag(createSpec, "base-dir", v["base-dir"]));
  await checkDirFlags({ "base-dir": baseDir });
  const disk = await createInstanceDisk({
    baseDir,
    id: requireFlag(createSpec, "id", v.id),
    out: requireFlag(createSpec, "out", v.out),
    ...(size === undefined ? {} : { size }),
    copy: v.copy,
    signal: ctx.signal,
    log: ctx.log,
  });
  if (v.json) ctx.stdout.write(JSON.stringify(disk) + "\n");
  else ctx.stdout.write(`Created ${disk.format === "raw" ? "raw copy" : "qcow2 overlay"} ${disk.path} (${formatBytes(disk.virtualSize)}) of base ${disk.baseName}${disk.version ? `, version ${disk.version}` : ""}\n`);
  return ExitCode.Ok;
}

async function inspect(argv: string[], ctx: CommandContext): Promise<ExitCode> {
  const parsed = parseFlags(argv, inspectSpec);
  if (parsed === "help") return help(ctx, renderHelp(inspectSpec));
  const { values: v, positionals } = parsed;
  if (positionals.length !== 1) throw usageError(inspectSpec, "give exactly one disk path");
  const format = v.format;
  if (format !== undefined && format !== "qcow2" && format !== "raw") throw new ConfigError(`Cannot use --format "${format}": expected qcow2 or raw`);
  const path = resolve(positionals[0] ?? "");
  const info = await inspectInstanceDisk(path, format);
  // The base's sidecar names the image and, for a tracked image, the version (unreadable to some users: 0640).
  const sc = info.baseName && info.backingFile ? await readSidecar(dirname(info.backingFile), info.baseName) : undefined;
  const of = { ...(typeof sc?.id === "string" ? { imageId: sc.id } : {}), ...(typeof sc?.version?.name === "string" ? { version: sc.version.name } : {}) };
  if (v.json) ctx.stdout.write(JSON.stringify({ path, ...info, ...of }) + "\n");
  else if (info.baseName) {
    const what = of.imageId ? ` (image "${of.imageId}"${of.version ? `, version ${of.version}` : ""})` : "";
    ctx.stdout.write(`${path}: ${info.format} overlay of base ${info.baseName}${what} (${info.backingFile ?? ""})\n`);
  }
  else if (info.backingFile) ctx.stdout.write(`${path}: ${info.format} backed by ${info.backingFile}, not a base\n`);
  else ctx.stdout.write(`${path}: ${info.format}, uses no base\n`);
  return ExitCode.Ok;
}

function help(ctx: CommandContext, text = usage): ExitCode {
  ctx.stdout.write(text);
  return ExitCode.Ok;
}

/** Runs `basecache disk create|inspect`. */
export const diskCommand: Command = async (argv, ctx) => {
  const [sub, ...rest] = argv;
  if (sub === "create") return create(rest, ctx);
  if (sub === "inspect") return inspect(rest, ctx);
  if (sub === "--help" || sub === "-h" || sub === "help") return help(ctx);
  throw new ConfigError(sub ? `Cannot run disk "${sub}": expected create or inspect\n\n${usage.trimEnd()}` : `Cannot run disk: expected create or inspect\n\n${usage.trimEnd()}`);
};
