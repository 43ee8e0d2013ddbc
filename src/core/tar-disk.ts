/**
 * Which file of a tar layer is the disk, decided while the archive streams by: the one regular file under
 * `disk/` (a KubeVirt containerDisk), or else the only regular file in the archive. Pure and incremental.
 */
import { TarFormatError, TarParser, type TarEntry } from "./tar.js";

/**
 * Normalises a stored tar path (drops `./`, leading `/` and empty components).
 * @throws TarFormatError (not-a-disk) for a path with a `..` component
 */
export function normaliseTarPath(path: string): string {
  const parts = path.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) throw new TarFormatError("not-a-disk", `tar entry "${printable(path)}" has a ".." path component`);
  return parts.join("/");
}

function printable(s: string): string {
  const clean = s.replace(/[^\x20-\x7e]/g, "?");
  return clean.length > 200 ? `${clean.slice(0, 200)}…` : clean;
}

export interface DiskSelectorOptions {
  /** Refuse a disk entry larger than this many bytes. */
  maxBytes?: number;
  /**
   * A regular file outside `disk/` up to this size is held in memory until the archive shows whether a `disk/`
   * file follows; a larger one is streamed out at once as the disk, and a later candidate is refused. Default 64 KiB.
   */
  holdLimit?: number;
}

type Route = "emit" | "hold" | "skip";

/**
 * Feeds a tar stream through a TarParser and returns, chunk by chunk, the bytes of the disk file.
 * Refuses (TarFormatError) several candidates, a link, device or sparse entry posing as the disk, `..` paths,
 * and an archive with no regular file.
 */
export class TarDiskSelector {
  private readonly parser = new TarParser();
  private route: Route = "skip";
  private disk: TarEntry | undefined;
  private diskPath = "";
  /** A regular file outside disk/ already streamed out as the disk. */
  private tentative = "";
  private tentativeSize = 0;
  private held: Uint8Array[] = [];
  private heldPath = "";
  private others = 0;
  private readonly maxBytes: number;
  private readonly holdLimit: number;

  constructor(opts: DiskSelectorOptions = {}) {
    this.maxBytes = opts.maxBytes ?? Number.MAX_SAFE_INTEGER;
    this.holdLimit = opts.holdLimit ?? 64 * 1024;
  }

  /** The chosen disk entry and its normalised path, once known. */
  get chosen(): { path: string; size: number } | undefined {
    if (this.disk) return { path: this.diskPath, size: this.disk.size };
    return this.tentative !== "" ? { path: this.tentative, size: this.tentativeSize } : undefined;
  }

  /**
   * Consumes a chunk of the archive and returns the disk bytes it completes (views into `chunk` or held copies).
   * @throws TarFormatError when the archive is corrupt or its disk is ambiguous or unsafe
   */
  push(chunk: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    for (const ev of this.parser.push(chunk)) {
      if (ev.kind === "entry") this.onEntry(ev.entry);
      else if (ev.kind === "data") {
        if (this.route === "emit") out.push(ev.bytes);
        else if (this.route === "hold") this.held.push(new Uint8Array(ev.bytes)); // a copy: the chunk may be reused
      } else this.route = "skip";
    }
    return out;
  }

  /**
   * Ends the archive and returns any disk bytes still held.
   * @throws TarFormatError when the archive is truncated or holds no single disk
   */
  finish(): Uint8Array[] {
    this.parser.finish();
    if (this.disk !== undefined) return [];
    if (this.others === 0) throw new TarFormatError("not-a-disk", "the archive holds no regular file under disk/ nor anywhere else");
    if (this.others > 1) throw new TarFormatError("not-a-disk", `the archive holds ${this.others} regular files and none under disk/; cannot tell which is the disk`);
    if (this.tentative !== "") return [];
    const held = this.held;
    this.held = [];
    this.disk = { path: this.heldPath, type: "file", size: held.reduce((n, b) => n + b.length, 0), linkPath: "", typeflag: "0" };
    this.diskPath = this.heldPath;
    return held;
  }

  private onEntry(entry: TarEntry): void {
    this.route = "skip";
    const path = normaliseTarPath(entry.path);
    const inDisk = path.startsWith("disk/");
    if (path === "disk" && entry.type !== "directory" && entry.type !== "file") {
      throw new TarFormatError("not-a-disk", `tar entry "disk" is a ${entry.type}, not a directory`);
    }
    if (inDisk) return this.onDiskDirEntry(entry, path);
    if (entry.type !== "file") return;
    this.others++;
    if (this.disk !== undefined) return;
    if (this.tentative !== "") {
      throw new TarFormatError("not-a-disk", `the archive holds several regular files ("${printable(this.tentative)}", "${printable(path)}") and none under disk/; cannot tell which is the disk`);
    }
    if (this.others > 1) return;
    if (entry.size <= this.holdLimit) {
      this.route = "hold";
      this.heldPath = path;
      return;
    }
    this.checkSize(entry, path);
    this.tentative = path;
    this.tentativeSize = entry.size;
    this.route = "emit";
  }

  private onDiskDirEntry(entry: TarEntry, path: string): void {
    if (entry.type === "directory") return;
    if (entry.type !== "file") {
      throw new TarFormatError("not-a-disk", `tar entry "${printable(path)}" is a ${entry.type}; the disk must be a regular file`);
    }
    if (this.disk !== undefined) {
      throw new TarFormatError("not-a-disk", `the archive holds several files under disk/ ("${printable(this.diskPath)}", "${printable(path)}"); cannot tell which is the disk`);
    }
    if (this.tentative !== "") {
      throw new TarFormatError("not-a-disk", `"${printable(path)}" follows "${printable(this.tentative)}", which was already taken as the disk`);
    }
    this.checkSize(entry, path);
    this.held = [];
    this.disk = entry;
    this.diskPath = path;
    this.route = "emit";
  }

  private checkSize(entry: TarEntry, path: string): void {
    if (entry.size > this.maxBytes) {
      throw new TarFormatError("too-large", `disk file "${printable(path)}" is ${entry.size} bytes, more than the limit of ${this.maxBytes}`);
    }
  }
}
