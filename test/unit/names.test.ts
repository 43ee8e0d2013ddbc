import { test } from "node:test";
import assert from "node:assert/strict";
import { baseNameFor, baseNameOfImage, classifyBaseFileName, versionedBaseName } from "../../src/core/names.js";

test("base name is the lowercase sha1 hex of the id, as Nova names it", () => {
  assert.equal(baseNameFor("abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
  assert.match(baseNameFor("67b67b36-0e07-4f6d-98d3-ed0057e9f87d"), /^[0-9a-f]{40}$/);
});

test("base names hash UTF-8 bytes", () => {
  // python3 -c "import hashlib; print(hashlib.sha1('é'.encode()).hexdigest())"
  assert.equal(baseNameFor("\u00e9"), "bf15be717ac1b080b4f1c456692825891ff5073d");
});

test("classifies _base entries by name", () => {
  const b = baseNameFor("x");
  const table: [string, string][] = [
    [b, "base"],
    [`${b}.part`, "temp"],
    [`${b}.converted`, "temp"],
    [`${b}.info.json.tmp`, "temp"],
    [`${b}.info.json`, "sidecar"],
    [`${b}.lock`, "lock"],
    [`${b}.current`, "pointer"],
    [`${b}.current.tmp`, "temp"],
    [`${b}_20`, "unknown"],
    [`${b}.bak`, "unknown"],
    ["lost+found", "unknown"],
    [b.toUpperCase(), "unknown"],
  ];
  for (const [name, kind] of table) assert.equal(classifyBaseFileName(name).kind, kind, name);
});

test("a versioned base is sha1 of `id@version`, a pinned image keeps Nova's sha1(id)", () => {
  assert.equal(versionedBaseName("abc", "0123456789ab"), baseNameFor("abc@0123456789ab"));
  assert.notEqual(versionedBaseName("abc", "0123456789ab"), baseNameFor("abc"));
  assert.equal(baseNameOfImage({ id: "abc" }), baseNameFor("abc"));
  assert.equal(baseNameOfImage({ id: "abc", version: { name: "0123456789ab" } }), versionedBaseName("abc", "0123456789ab"));
});
