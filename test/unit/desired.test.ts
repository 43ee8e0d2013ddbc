import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import type { ImageSpec } from "../../src/core/api-records.js";
import { capImages, findConflicts, MaxWantedBy, planDesiredState, type ImageCacheView, type NodeView } from "../../src/core/desired.js";
import { definitionKey } from "../../src/core/image-definition.js";
import { selectorMatches } from "../../src/core/label-selector.js";

function img(id: string, url = `https://images.example/${id}.qcow2`, extra: Partial<ImageSpec> = {}): ImageSpec {
  return { id, source: { http: { url } }, ...extra };
}
function ic(name: string, images: ImageSpec[], opts: Partial<ImageCacheView> = {}): ImageCacheView {
  return { name, images, creationTimestamp: "2026-01-01T00:00:00Z", ...opts };
}
function node(name: string, labels: Record<string, string> = {}): NodeView {
  return { name, labels };
}
function ids(state: ReturnType<typeof planDesiredState>, n: string): string[] | undefined {
  return state.nodes.get(n)?.map((i) => i.id);
}

test("fans images out to the nodes the selector matches, and none to the others", () => {
  const state = planDesiredState(
    [ic("gpu", [img("b"), img("a")], { nodeSelector: { matchLabels: { tier: "gpu" } } })],
    [node("n1", { tier: "gpu" }), node("n2", { tier: "cpu" }), node("n3", { tier: "gpu" })],
  );
  assert.deepEqual(ids(state, "n1"), ["a", "b"]);
  assert.equal(state.nodes.has("n2"), false);
  assert.deepEqual(state.selected.get("gpu"), ["n1", "n3"]);
  assert.deepEqual(state.nodes.get("n1")?.[0], { id: "a", source: { http: { url: "https://images.example/a.qcow2" } }, wantedBy: ["gpu"], unusedFor: "24h" });
});

test("wantedBy stays within the schema's bound however many ImageCaches share an image, and the image stays wanted", () => {
  const names = Array.from({ length: MaxWantedBy + 6 }, (_, i) => `ic-${String(i).padStart(3, "0")}`);
  const state = planDesiredState(names.map((n) => ic(n, [img("shared")])), [node("n1")]);
  const shared = state.nodes.get("n1")?.find((i) => i.id === "shared");
  assert.deepEqual(shared?.wantedBy, names.slice(0, MaxWantedBy));
  for (const n of names) assert.deepEqual(state.selected.get(n), ["n1"]);
});

test("an empty selector selects every node", () => {
  const state = planDesiredState([ic("all", [img("a")], { nodeSelector: {} })], [node("n1"), node("n2", { x: "y" })]);
  assert.deepEqual([...state.nodes.keys()], ["n1", "n2"]);
});

test("two ImageCaches sharing an identical image list both in wantedBy, with the shorter retention", () => {
  const state = planDesiredState(
    [ic("a-ic", [img("shared"), img("only-a")], { retention: { unusedFor: "48h" } }), ic("b-ic", [img("shared")], { retention: { unusedFor: "90m" } })],
    [node("n1")],
  );
  const shared = state.nodes.get("n1")?.find((i) => i.id === "shared");
  assert.deepEqual(shared?.wantedBy, ["a-ic", "b-ic"]);
  assert.equal(shared?.unusedFor, "1h30m");
  assert.equal(state.nodes.get("n1")?.find((i) => i.id === "only-a")?.unusedFor, "48h");
  assert.deepEqual(state.conflicts, []);
});

test("the same id defined differently is a conflict: the older definition is used, the newer is not", () => {
  const older = ic("older", [img("x", "https://one.example/x"), img("y")], { creationTimestamp: "2026-01-01T00:00:00Z" });
  const newer = ic("newer", [img("x", "https://two.example/x"), img("z")], { creationTimestamp: "2026-02-01T00:00:00Z" });
  const state = planDesiredState([newer, older], [node("n1")]);
  assert.deepEqual(state.conflicts, [{ id: "x", winner: "older", losers: ["newer"] }]);
  const x = state.nodes.get("n1")?.find((i) => i.id === "x");
  assert.deepEqual(x?.source, { http: { url: "https://one.example/x" } });
  assert.deepEqual(x?.wantedBy, ["older"]);
  assert.deepEqual(ids(state, "n1"), ["x", "y", "z"]);
});

test("conflicts differ by checksum too, and ties in age go to the name first in order", () => {
  const sum = `sha256:${"a".repeat(64)}`;
  const conflicts = findConflicts([ic("b", [img("x", undefined, { checksum: sum })]), ic("a", [img("x")]), ic("c", [img("x")])]);
  assert.deepEqual(conflicts, [{ id: "x", winner: "a", losers: ["b"] }]);
});

test("a node that would hold too many images keeps the first by id and reports the rest", () => {
  const many = Array.from({ length: 5 }, (_, i) => img(`img-${i}`));
  const state = planDesiredState([ic("big", many)], [node("n1")], 3);
  assert.deepEqual(ids(state, "n1"), ["img-0", "img-1", "img-2"]);
  assert.deepEqual(state.overflow.get("n1"), ["img-3", "img-4"]);
  assert.deepEqual(capImages([], 3), { kept: [], dropped: [] });
});

// Property tests over random clusters.
const labelKeys = ["zone", "tier"];
const labelValues = ["a", "b"];
const arbLabels = fc.dictionary(fc.constantFrom(...labelKeys), fc.constantFrom(...labelValues));
const arbSelector = fc.option(fc.record({ matchLabels: arbLabels }), { nil: undefined });
const arbImage = fc.record({ id: fc.constantFrom("i1", "i2", "i3", "i4"), url: fc.constantFrom("https://a.example/1", "https://b.example/2") });
const arbCluster = fc.record({
  ics: fc.uniqueArray(
    fc.record({ name: fc.constantFrom("ic-a", "ic-b", "ic-c", "ic-d"), sel: arbSelector, imgs: fc.uniqueArray(arbImage, { selector: (i) => i.id, maxLength: 4 }), ts: fc.integer({ min: 1, max: 3 }) }),
    { selector: (x) => x.name, maxLength: 4 },
  ),
  nodes: fc.uniqueArray(fc.record({ name: fc.constantFrom("n1", "n2", "n3", "n4", "n5"), labels: arbLabels }), { selector: (n) => n.name, maxLength: 5 }),
});
type Cluster = typeof arbCluster extends fc.Arbitrary<infer T> ? T : never;
function build(c: Cluster) {
  const ics = c.ics.map((x) => ic(x.name, x.imgs.map((i) => img(i.id, i.url)), { creationTimestamp: `2026-01-0${x.ts}T00:00:00Z`, ...(x.sel ? { nodeSelector: x.sel } : {}) }));
  return { ics, nodes: c.nodes };
}

test("every wanted image is wanted by an ImageCache that selects the node and defines it so, and every such pair is served unless lost", () => {
  fc.assert(
    fc.property(arbCluster, (c) => {
      const { ics, nodes } = build(c);
      const state = planDesiredState(ics, nodes);
      const lost = new Set(state.conflicts.flatMap((x) => x.losers.map((l) => `${l}/${x.id}`)));
      for (const n of nodes) {
        const wanted = state.nodes.get(n.name) ?? [];
        assert.deepEqual(wanted.map((w) => w.id), [...new Set(wanted.map((w) => w.id))].sort(), "ids are unique and sorted");
        for (const w of wanted) {
          for (const by of w.wantedBy) {
            const owner = ics.find((x) => x.name === by)!;
            assert.ok(selectorMatches(owner.nodeSelector, n.labels));
            assert.equal(definitionKey(owner.images.find((i) => i.id === w.id)!), definitionKey(w));
          }
        }
        for (const x of ics.filter((i) => selectorMatches(i.nodeSelector, n.labels))) {
          for (const i of x.images) {
            const served = wanted.find((w) => w.id === i.id)?.wantedBy.includes(x.name) ?? false;
            assert.equal(served, !lost.has(`${x.name}/${i.id}`), `${x.name}/${i.id} on ${n.name}`);
          }
        }
      }
    }),
  );
});

test("the plan does not depend on the order of its inputs", () => {
  fc.assert(
    fc.property(arbCluster, fc.integer(), (c, seed) => {
      const { ics, nodes } = build(c);
      const shuffle = <T>(xs: T[]) => [...xs].sort((a, b) => (JSON.stringify(a).length * seed) % 7 - (JSON.stringify(b).length * seed) % 7);
      const a = planDesiredState(ics, nodes);
      const b = planDesiredState(shuffle([...ics].reverse()), shuffle([...nodes].reverse()));
      assert.deepEqual([...a.nodes.entries()], [...b.nodes.entries()]);
      assert.deepEqual(a.conflicts, b.conflicts);
      assert.deepEqual([...a.selected.entries()].sort(), [...b.selected.entries()].sort());
    }),
  );
});
