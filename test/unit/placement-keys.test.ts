import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { isLabelName, isPlacementLabel, MaxLabelName, placementKeyName, placementLabel, syncedLabel } from "../../src/core/placement-keys.js";

// A DNS subdomain as the API server allows for an ImageCache name: labels of [a-z0-9-], alphanumeric at both
// ends, joined by dots, at most 253 characters.
const dnsLabel = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/);
const dnsSubdomain = fc.array(dnsLabel, { minLength: 1, maxLength: 8 }).map((parts) => parts.join(".")).filter((n) => n.length <= 253);
const qualifiedPrefix = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

test("a name of up to 63 characters is its own key", () => {
  for (const name of ["ubuntu-noble", "a", "web.images.v2", "x".repeat(63), `a${"-".repeat(61)}b`]) assert.equal(placementKeyName(name), name);
  assert.equal(placementLabel("ubuntu-noble"), "imagecache.basecache.io/ubuntu-noble");
  assert.equal(syncedLabel("ubuntu-noble"), "synced.imagecache.basecache.io/ubuntu-noble");
});

test("a longer name maps to its first 42 characters, an underscore and 20 hex digits of its SHA-256", () => {
  const name = `${"a".repeat(40)}.b-${"c".repeat(30)}`;
  const key = placementKeyName(name);
  assert.equal(key.length, 63);
  assert.match(key, /^a{40}\.b_[0-9a-f]{20}$/);
  // A prefix ending in a dot or hyphen is still a valid label name: the underscore follows it.
  assert.ok(isLabelName(placementKeyName(`${"a".repeat(41)}-${"b".repeat(30)}`)));
});

test("every length from 1 to 253 gives a valid label name under a valid prefix", () => {
  for (let n = 1; n <= 253; n++) {
    for (const fill of ["a", "9", "a-", "a."]) {
      const name = `${fill.repeat(n)}`.slice(0, n - 1) + "z";
      const key = placementKeyName(name);
      assert.ok(isLabelName(key), `length ${n} (${fill}): ${key}`);
      assert.ok(key.length <= MaxLabelName);
      assert.equal(key === name, n <= 63, `length ${n} is mapped only past 63`);
      const [prefix] = placementLabel(name).split("/");
      assert.ok(prefix!.length <= 253 && qualifiedPrefix.test(prefix!));
    }
  }
});

test("any DNS subdomain maps to a valid, stable key; two different names never share one", () => {
  fc.assert(
    fc.property(dnsSubdomain, dnsSubdomain, (a, b) => {
      const ka = placementKeyName(a);
      assert.ok(isLabelName(ka), ka);
      assert.equal(placementKeyName(a), ka);
      if (a !== b) assert.notEqual(ka, placementKeyName(b));
    }),
    { numRuns: 2000 },
  );
});

test("a short name can never collide with a long name's mapped key: only mapped keys hold an underscore", () => {
  fc.assert(
    fc.property(dnsSubdomain, (name) => {
      const key = placementKeyName(name);
      assert.equal(key.includes("_"), name.length > 63);
    }),
    { numRuns: 2000 },
  );
  // Names sharing their first 42 characters differ in the hash.
  const head = "p".repeat(42);
  const keys = new Set(Array.from({ length: 500 }, (_, i) => placementKeyName(`${head}${"q".repeat(30)}${i}`)));
  assert.equal(keys.size, 500);
});

test("strings that are not DNS subdomains still map to valid label names", () => {
  fc.assert(
    fc.property(fc.string({ minLength: 0, maxLength: 300 }), (s) => {
      assert.ok(isLabelName(placementKeyName(s)), JSON.stringify(s));
    }),
    { numRuns: 2000 },
  );
});

test("only keys under the two placement prefixes are ours", () => {
  const table: [string, boolean][] = [
    ["imagecache.basecache.io/x", true],
    ["synced.imagecache.basecache.io/x", true],
    ["imagecache.basecache.io", false],
    ["basecache.io/node", false],
    ["other.imagecache.basecache.io/x", false],
    ["kubernetes.io/hostname", false],
    ["xsynced.imagecache.basecache.io/x", false],
  ];
  for (const [key, ours] of table) assert.equal(isPlacementLabel(key), ours, key);
});
