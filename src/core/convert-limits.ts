/**
 * The limits `qemu-img convert` runs under, sized from the image: an address-space limit (prlimit --as), a
 * CPU-time limit and a wall-clock bound that grows with the bytes to convert. The numbers come from measured
 * conversions of legitimate 2 GiB and 20 GiB images (hack/measure-convert.sh, docs/design/2026-12-02-convert-limits.md);
 * each bound leaves a wide margin over them, so only an image built to exhaust the converter meets it.
 */

const MiB = 1024 * 1024;

/** Limits of one conversion. */
export interface ConvertLimits {
  /** prlimit --as, in bytes. */
  addressSpaceBytes: number;
  /** prlimit --cpu, in seconds. */
  cpuSeconds: number;
  /** Wall-clock bound; the process is killed after it. */
  timeoutMs: number;
}

/** What the conversion has to do: the virtual size and the bytes of it that hold data (qemu-img map). */
export interface ConvertWork {
  virtualSize: number;
  dataBytes: number;
}

/** Operator overrides (env BASECACHE_CONVERT_MEMORY, BASECACHE_CONVERT_SECONDS): fixed values instead of the sizing. */
export interface ConvertOverrides {
  addressSpaceBytes?: number;
  /** Both the wall-clock and the CPU bound, in seconds. */
  seconds?: number;
}

/**
 * The sizing. qemu-img convert with MALLOC_ARENA_MAX=2 peaked at 225-304 MiB of address space and at most 26 MiB
 * resident for every image measured (2 GiB and 20 GiB, qcow2 and streamOptimized VMDK, the largest clusters and
 * grains accepted); 768 MiB is 2.5 times that, and two conversions at the limit still fit the agent's 1 GiB with
 * the agent itself (most of the address space is reserved, not resident). The slowest one moved data at 136 MiB/s
 * on a shared 2-core machine; the bound assumes 8 MiB/s of data and 512 MiB/s of holes, plus a minute.
 */
export const ConvertSizing = {
  addressSpaceBytes: 768 * MiB,
  baseSeconds: 60,
  dataBytesPerSecond: 8 * MiB,
  holeBytesPerSecond: 512 * MiB,
} as const;

/**
 * Bytes of image tables (qcow2 L1 and refcount table, VMDK grain directory, VHDX BAT, VHD/VDI block map) that
 * qemu-img reads into memory at once. Legitimate images of 1 TiB need at most a few MiB; 64 MiB leaves the
 * rest of the address-space limit to the converter itself.
 */
export const MaxTableBytes = 64 * MiB;

/** The limits for converting an image of this size and data. */
export function planConvertLimits(work: ConvertWork, overrides: ConvertOverrides = {}): ConvertLimits {
  const data = Math.max(0, Math.min(work.dataBytes, work.virtualSize));
  const holes = Math.max(0, work.virtualSize - data);
  const sized = ConvertSizing.baseSeconds + data / ConvertSizing.dataBytesPerSecond + holes / ConvertSizing.holeBytesPerSecond;
  const seconds = Math.ceil(overrides.seconds ?? sized);
  return { addressSpaceBytes: overrides.addressSpaceBytes ?? ConvertSizing.addressSpaceBytes, cpuSeconds: seconds, timeoutMs: seconds * 1000 };
}

/** Environment variables that override the sizing; for operators with unusual disks, and for tests. */
export const ConvertEnv = { memory: "BASECACHE_CONVERT_MEMORY", seconds: "BASECACHE_CONVERT_SECONDS" } as const;

/**
 * Reads the overrides from environment variables (whole bytes, whole seconds).
 * @returns the overrides, or the text of what is wrong
 */
export function parseConvertOverrides(env: Readonly<Record<string, string | undefined>>): ConvertOverrides | { error: string } {
  const out: ConvertOverrides = {};
  const memory = env[ConvertEnv.memory];
  const seconds = env[ConvertEnv.seconds];
  if (memory !== undefined && memory !== "") {
    if (!/^\d+$/.test(memory) || Number(memory) < 16 * MiB) return { error: `${ConvertEnv.memory}="${memory}" is not a whole number of bytes of at least ${16 * MiB}` };
    out.addressSpaceBytes = Number(memory);
  }
  if (seconds !== undefined && seconds !== "") {
    if (!/^\d+$/.test(seconds) || Number(seconds) < 1) return { error: `${ConvertEnv.seconds}="${seconds}" is not a whole number of seconds of at least 1` };
    out.seconds = Number(seconds);
  }
  return out;
}
