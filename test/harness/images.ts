/**
 * Builds test images with real qemu-img and qemu-io in a temp dir: good images of every supported format with
 * known content, and hostile ones (backing file, external data file, LUKS, QED, VMDK with outside extents,
 * corrupt qcow2, oversize, an HTML page, a non-sector-sized raw, an empty file).
 */
import { execa } from "execa";
import { randomBytes } from "node:crypto";
import { mkdtemp, open, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

const MiB = 1024 * 1024;

/** A temp dir that test images are built in; remove it with `cleanup()`. */
export class ImageDir {
  private constructor(readonly dir: string) {}

  static async create(prefix = "basecache-img-"): Promise<ImageDir> {
    return new ImageDir(await mkdtemp(join(tmpdir(), prefix)));
  }

  path(name: string): string {
    return join(this.dir, name);
  }

  async cleanup(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }

  /** A raw image of `sizeMiB` with a few MiB of random data at 1 MiB and a pattern at the end. */
  async raw(name: string, sizeMiB = 16): Promise<string> {
    const p = this.path(name);
    const fh = await open(p, "w");
    await fh.truncate(sizeMiB * MiB);
    await fh.write(randomBytes(2 * MiB), 0, 2 * MiB, MiB);
    await fh.write(Buffer.alloc(4096, 0x5a), 0, 4096, sizeMiB * MiB - 4096);
    await fh.close();
    return p;
  }

  /** Converts a raw image to `format` (qcow2, vmdk, vhdx, vpc, vdi, qed) with extra `-o` options. */
  async convert(raw: string, name: string, format: string, options: string[] = [], compress = false): Promise<string> {
    const p = this.path(name);
    const args = ["convert", "-q", "-f", "raw", "-O", format, ...(compress ? ["-c"] : []), ...(options.length ? ["-o", options.join(",")] : []), raw, p];
    await execa("qemu-img", args);
    return p;
  }

  /** A qcow2 with data written by qemu-io (so it has allocated clusters, zero clusters and holes). */
  async qcow2(name: string, sizeMiB = 16, opts: string[] = []): Promise<string> {
    const p = this.path(name);
    await execa("qemu-img", ["create", "-q", "-f", "qcow2", ...(opts.length ? ["-o", opts.join(",")] : []), p, `${sizeMiB}M`]);
    await execa("qemu-io", ["-f", "qcow2", "-c", "write -P 0x41 0 1M", "-c", "write -z 2M 1M", "-c", `write -P 0x42 ${sizeMiB - 1}M 512k`, p]);
    return p;
  }

  /** A qcow2 overlay whose backing file is `backing` (format given). */
  async withBacking(name: string, backing: string, backingFormat: string): Promise<string> {
    const p = this.path(name);
    await execa("qemu-img", ["create", "-q", "-f", "qcow2", "-b", backing, "-F", backingFormat, p]);
    return p;
  }

  /** A qcow2 whose data lives in an external data file. */
  async withDataFile(name: string, dataFile: string): Promise<string> {
    const p = this.path(name);
    await execa("qemu-img", ["create", "-q", "-f", "qcow2", "-o", `data_file=${dataFile}`, p, "16M"]);
    return p;
  }

  /** A LUKS-encrypted qcow2. */
  async encrypted(name: string): Promise<string> {
    const p = this.path(name);
    // NOTE: qemu's PBKDF benchmark sometimes fails with "Unable to get accurate CPU usage"; it passes on a retry.
    for (let attempt = 1; ; attempt++) {
      const r = await execa("qemu-img", ["create", "-q", "-f", "qcow2", "--object", "secret,id=s0,data=secret", "-o", "encrypt.format=luks,encrypt.key-secret=s0", p, "16M"], { reject: attempt >= 10 });
      if (r.exitCode === 0) return p;
    }
  }

  /** An image of `format` created empty with the given virtual size (for oversize tests). */
  async empty(name: string, format: string, size: string, opts: string[] = []): Promise<string> {
    const p = this.path(name);
    await execa("qemu-img", ["create", "-q", "-f", format, ...(opts.length ? ["-o", opts.join(",")] : []), p, size]);
    return p;
  }

  /** A qcow2 whose L1 table entry points past the end of the file: structural corruption qemu-img check finds. */
  async corruptQcow2(name: string): Promise<string> {
    const p = await this.qcow2(name, 16);
    const buf = await readFile(p);
    const l1Offset = Number(buf.readBigUInt64BE(40));
    // Point the first L2 table far outside the file, keeping the "copied" flag.
    buf.writeBigUInt64BE((1n << 63n) | (1n << 40n), l1Offset);
    await writeFile(p, buf);
    return p;
  }

  /** A monolithicFlat VMDK descriptor whose extent is a host file outside the image. */
  async vmdkOutsideExtent(name: string, target = "/etc/hostname"): Promise<string> {
    const p = this.path(name);
    const text = [
      "# Disk DescriptorFile",
      "version=1",
      "CID=12345678",
      "parentCID=ffffffff",
      'createType="monolithicFlat"',
      "",
      `RW 1 FLAT "${target}" 0`,
      "",
      'ddb.adapterType = "ide"',
      "",
    ].join("\n");
    await writeFile(p, text);
    return p;
  }

  /** A monolithicSparse VMDK whose embedded descriptor names an extent in another file. */
  async vmdkEmbeddedOutsideExtent(name: string): Promise<string> {
    const raw = await this.raw(`${name}.src.raw`, 4);
    const p = await this.convert(raw, name, "vmdk", ["subformat=monolithicSparse"]);
    const buf = await readFile(p);
    const descOffset = Number(buf.readBigUInt64LE(28)) * 512;
    const descSize = Number(buf.readBigUInt64LE(36)) * 512;
    const text = buf.subarray(descOffset, descOffset + descSize).toString("latin1");
    const evil = text.replace(/RW (\d+) SPARSE "[^"]*"/, 'RW $1 SPARSE "/etc/hostname"');
    buf.write(evil.padEnd(descSize, "\0").slice(0, descSize), descOffset, "latin1");
    await writeFile(p, buf);
    return p;
  }

  /** A file with arbitrary contents. */
  async file(name: string, data: Buffer | string): Promise<string> {
    const p = this.path(name);
    await writeFile(p, data);
    return p;
  }
}

/** True when `a` (raw) has the same content as `b` read as `bFormat`, by `qemu-img compare`. */
export async function sameContent(rawPath: string, other: string, otherFormat: string): Promise<boolean> {
  const r = await execa("qemu-img", ["compare", "-q", "-f", "raw", "-F", otherFormat, rawPath, other], { reject: false });
  return r.exitCode === 0;
}
