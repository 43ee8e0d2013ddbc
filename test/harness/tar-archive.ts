/**
 * A minimal tar writer for unit tests of the tar parser and disk selector: headers with every field a test
 * may bend (checksum, magic, size field), pax and GNU long-name records, padding and end blocks. GNU tar
 * builds the real archives in the integration tests.
 */
import assert from "node:assert/strict";
import { TarFormatError } from "../../src/core/tar.js";

export interface HeaderSpec {
  name: string;
  size?: number;
  type?: string;
  linkname?: string;
  prefix?: string;
  magic?: "ustar" | "gnu" | "v7";
  sizeField?: Uint8Array;
  corruptChecksum?: boolean;
  signedChecksum?: boolean;
}

function octal(value: number, width: number): Buffer {
  return Buffer.from(value.toString(8).padStart(width - 1, "0") + "\0", "ascii");
}

export function header(h: HeaderSpec): Buffer {
  const b = Buffer.alloc(512);
  b.write(h.name, 0, 100, "utf8");
  octal(0o644, 8).copy(b, 100);
  octal(0, 8).copy(b, 108);
  octal(0, 8).copy(b, 116);
  (h.sizeField ? Buffer.from(h.sizeField) : octal(h.size ?? 0, 12)).copy(b, 124);
  octal(0, 12).copy(b, 136);
  b.write(h.type ?? "0", 156, 1, "ascii");
  if (h.linkname) b.write(h.linkname, 157, 100, "utf8");
  const magic = h.magic ?? "ustar";
  if (magic === "ustar") b.write("ustar\u000000", 257, 8, "binary");
  if (magic === "gnu") b.write("ustar  \u0000", 257, 8, "binary");
  if (h.prefix) b.write(h.prefix, 345, 155, "utf8");
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of b) sum += h.signedChecksum && byte > 127 ? byte - 256 : byte;
  octal(h.corruptChecksum ? sum + 1 : sum, 7).copy(b, 148);
  b[155] = 0x20;
  return b;
}

export function pad(data: Uint8Array): Buffer {
  const rem = data.length % 512;
  return Buffer.concat([Buffer.from(data), Buffer.alloc(rem === 0 ? 0 : 512 - rem)]);
}

export function file(name: string, data: Uint8Array | string, extra: Partial<HeaderSpec> = {}): Buffer {
  const bytes = typeof data === "string" ? Buffer.from(data) : data;
  return Buffer.concat([header({ name, size: bytes.length, ...extra }), pad(bytes)]);
}
export const dirEntry = (name: string) => header({ name, type: "5" });
export const link = (name: string, type: string, target: string) => header({ name, type, linkname: target });

export function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  // The length counts bytes, including its own digits.
  let len = Buffer.byteLength(body) + 1;
  while (Buffer.byteLength(`${len}${body}`) !== len) len = Buffer.byteLength(`${len}${body}`);
  return `${len}${body}`;
}
export function pax(records: Record<string, string>, type = "x"): Buffer {
  const data = Buffer.from(Object.entries(records).map(([k, v]) => paxRecord(k, v)).join(""));
  return Buffer.concat([header({ name: "PaxHeader", type, size: data.length }), pad(data)]);
}
export function gnuLong(type: "L" | "K", value: string): Buffer {
  const data = Buffer.from(value + "\0");
  return Buffer.concat([header({ name: "././@LongLink", type, size: data.length, magic: "gnu" }), pad(data)]);
}
export const end = () => Buffer.alloc(1024);
export const archive = (...parts: Buffer[]) => Buffer.concat(parts);

/** A patterned buffer of `size` bytes, different for each seed. */
export function disk(size: number, seed = 7): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

/** The TarFormatError `fn` throws; fails the test when it throws none. */
export function refusal(fn: () => unknown): TarFormatError {
  try {
    fn();
  } catch (err) {
    if (err instanceof TarFormatError) return err;
    throw err;
  }
  assert.fail("expected a TarFormatError");
}
