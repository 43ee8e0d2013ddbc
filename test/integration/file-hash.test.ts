/** The digest of a stored base: holes hashed as zeros without being read, equal to hashing every byte. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, open, readFile, rm, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sha256OfFile } from "../../src/image/file-hash.js";

test("a sparse file's digest, holes at the start, middle and end, equals the digest of all its bytes", async () => {
  const dir = await mkdtemp(join(tmpdir(), "basecache-file-hash-"));
  try {
    const cases: [string, [number, number][], number][] = [
      ["holes around data", [[3 << 20, 5], [(7 << 20) + 4096, 3 << 20]], 16 << 20],
      ["data at both ends", [[0, 1 << 20], [(15 << 20) - 7, 7]], 15 << 20],
      ["all hole", [], 5 << 20],
      ["empty", [], 0],
    ];
    for (const [name, runs, size] of cases) {
      const path = join(dir, name.replace(/ /g, "-"));
      await writeFile(path, "");
      await truncate(path, size);
      const fh = await open(path, "r+");
      for (const [at, n] of runs) await fh.write(Buffer.alloc(n, (at % 251) + 1), 0, n, at);
      await fh.close();
      const want = createHash("sha256").update(await readFile(path)).digest("hex");
      assert.deepEqual(await sha256OfFile(path), { sha256: want, bytes: size }, name);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
