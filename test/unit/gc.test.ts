import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { baseNameFor } from "../../src/core/names.js";
import {
  DefaultRetentionMs,
  GcStateFileName,
  emptyGcState,
  imagesFromAnnotation,
  planGc,
  type GcDecision,
  type GcEntry,
  type GcInput,
  type GcReason,
  type GcState,
} from "../../src/core/gc.js";

const H = 60 * 60 * 1000;
const NOW = 1_800_000_000_000;
const A = baseNameFor("img-a");
const B = baseNameFor("img-b");
const C = baseNameFor("img-c");

function entry(name: string, over: Partial<GcEntry> = {}): GcEntry {
  return { name, type: "file", allocatedBytes: 1000, mtimeMs: NOW - 100 * H, held: false, ...over };
}

function input(over: Partial<GcInput> = {}): GcInput {
  return { now: NOW, entries: [], wanted: [], uses: [], uncertainties: [], state: emptyGcState(), defaultRetentionMs: DefaultRetentionMs, ...over };
}

function stateWith(records: GcState["bases"]): GcState {
  return { version: 1, bases: records };
}

function decisionFor(plan: { decisions: GcDecision[] }, name: string): GcDecision {
  const d = plan.decisions.find((x) => x.name === name);
  assert.ok(d, `no decision for ${name}`);
  return d;
}

// ---- Bases: every combination of use, open, wanted, busy, uncertainty and age -------------------------

type Age = "no-record" | "within" | "exactly" | "expired" | "future";
const ages: Age[] = ["no-record", "within", "exactly", "expired", "future"];
const uses = ["none", "disk", "pod", "both"] as const;

function recordFor(age: Age): GcState["bases"][string] | undefined {
  switch (age) {
    case "no-record":
      return undefined;
    case "within":
      return { unusedSince: NOW - 2 * H, retentionMs: 24 * H };
    case "exactly":
      return { unusedSince: NOW - 24 * H, retentionMs: 24 * H };
    case "expired":
      return { unusedSince: NOW - 30 * H, retentionMs: 24 * H };
    case "future":
      return { unusedSince: NOW + 5 * H, retentionMs: 24 * H };
  }
}

// The rules of docs/design/gc-rules.md as a precedence list: the first that holds decides.
function expectedBaseReason(c: { use: string; held: boolean; wanted: boolean; busy: boolean; uncertain: boolean; age: Age; corrupt: boolean }): [string, GcReason] {
  if (c.use !== "none") return ["keep", "InUse"];
  if (c.held) return ["keep", "Open"];
  if (c.corrupt && !c.busy && !c.uncertain) return ["delete", "Corrupt"];
  if (c.wanted) return ["keep", "Wanted"];
  if (c.busy) return ["keep", "Busy"];
  if (c.uncertain) return ["keep", "ReferencesIncomplete"];
  if (c.age === "exactly" || c.age === "expired") return ["delete", "RetentionExpired"];
  return ["keep", "WithinRetention"];
}

test("every combination of use, open, wanted, busy, uncertainty, age and corruption decides a base by the first rule that holds", () => {
  let rows = 0;
  for (const use of uses)
    for (const held of [false, true])
      for (const wanted of [false, true])
        for (const busy of [false, true])
          for (const uncertain of [false, true])
            for (const age of ages)
              for (const corrupt of [false, true]) {
                const c = { use, held, wanted, busy, uncertain, age, corrupt };
                const entries = [entry(A, { held }), entry(`${A}.info.json`), ...(busy ? [entry(`${A}.part`, { held: true })] : [])];
                const useList = [
                  ...(use === "disk" || use === "both" ? [{ base: A, by: "disk /i/vm1/disk" }] : []),
                  ...(use === "pod" || use === "both" ? [{ base: A, by: "pod default/p1" }] : []),
                ];
                const record = recordFor(age);
                const plan = planGc(
                  input({
                    entries,
                    uses: useList,
                    wanted: wanted ? [{ base: A, imageId: "img-a", retentionMs: 24 * H }] : [],
                    uncertainties: uncertain ? ["disk /i/vm9/disk: cannot read header"] : [],
                    state: stateWith(record ? { [A]: record } : {}),
                    ...(corrupt ? { corrupt: [A] } : {}),
                  }),
                );
                const d = decisionFor(plan, A);
                const [action, reason] = expectedBaseReason(c);
                assert.deepEqual([d.action, d.reason], [action, reason], JSON.stringify(c));
                const sidecar = decisionFor(plan, `${A}.info.json`);
                assert.equal(sidecar.action, action, `sidecar follows its base: ${JSON.stringify(c)}`);
                if (use !== "none") assert.equal(d.users?.length, use === "both" ? 2 : 1);
                rows++;
              }
  assert.equal(rows, 2 * 4 * 2 * 2 * 2 * 2 * 5);
});

test("a base seen unused for the first time starts its retention clock now and is kept", () => {
  const plan = planGc(input({ entries: [entry(A)] }));
  assert.equal(decisionFor(plan, A).reason, "WithinRetention");
  assert.deepEqual(plan.state.bases[A], { unusedSince: NOW });
});

test("an old file mtime alone never expires a base: the clock starts when a pass sees it unused", () => {
  const plan = planGc(input({ entries: [entry(A, { mtimeMs: NOW - 1000 * H })] }));
  assert.equal(decisionFor(plan, A).action, "keep");
});

test("the retention a wanting ImageCache gave is remembered after it stops wanting the base", () => {
  const first = planGc(input({ entries: [entry(A)], wanted: [{ base: A, imageId: "img-a", retentionMs: 1 * H }] }));
  assert.deepEqual(first.state.bases[A], { retentionMs: 1 * H, imageId: "img-a" });
  const second = planGc(input({ entries: [entry(A)], state: first.state, now: NOW + 10 }));
  assert.equal(decisionFor(second, A).reason, "WithinRetention");
  assert.equal(second.state.bases[A]?.unusedSince, NOW + 10);
  const third = planGc(input({ entries: [entry(A)], state: second.state, now: NOW + 10 + 1 * H }));
  const d = decisionFor(third, A);
  assert.deepEqual([d.action, d.reason, d.imageId], ["delete", "RetentionExpired", "img-a"]);
  assert.equal(third.state.bases[A], undefined);
});

test("the shortest retention among wanting ImageCaches counts", () => {
  const plan = planGc(
    input({
      entries: [entry(A)],
      wanted: [
        { base: A, imageId: "img-a", retentionMs: 48 * H },
        { base: A, imageId: "img-a", retentionMs: 2 * H },
      ],
    }),
  );
  assert.equal(plan.state.bases[A]?.retentionMs, 2 * H);
});

test("a base used again loses its unused-since record, so the clock restarts when it is next unused", () => {
  const state = stateWith({ [A]: { unusedSince: NOW - 23 * H } });
  const used = planGc(input({ entries: [entry(A)], uses: [{ base: A, by: "pod ns/p" }], state }));
  assert.equal(used.state.bases[A]?.unusedSince, undefined);
  const later = planGc(input({ entries: [entry(A)], state: used.state, now: NOW + 2 * H }));
  assert.equal(decisionFor(later, A).reason, "WithinRetention");
});

test("uncertain uses keep a prior unused-since record but never start one", () => {
  const state = stateWith({ [A]: { unusedSince: NOW - 50 * H } });
  const plan = planGc(input({ entries: [entry(A), entry(B)], uncertainties: ["pods not listed"], state }));
  assert.equal(plan.state.bases[A]?.unusedSince, NOW - 50 * H);
  assert.equal(plan.state.bases[B], undefined);
});

test("the default retention applies when no ImageCache gave one", () => {
  const keep = planGc(input({ entries: [entry(A)], state: stateWith({ [A]: { unusedSince: NOW - 23 * H } }) }));
  assert.equal(decisionFor(keep, A).action, "keep");
  const go = planGc(input({ entries: [entry(A)], state: stateWith({ [A]: { unusedSince: NOW - 24 * H } }) }));
  assert.equal(decisionFor(go, A).action, "delete");
});

test("records of bases no longer on disk are dropped", () => {
  const plan = planGc(input({ entries: [entry(A)], state: stateWith({ [B]: { unusedSince: NOW - H } }) }));
  assert.equal(plan.state.bases[B], undefined);
});

// ---- Temps, sidecars, locks, unknown names ---------------------------------------------------------------

test("temp files go only when neither they nor any other work file of their base is held", () => {
  for (const suffix of [".part", ".converted", ".info.json.tmp", ".part.resume", ".part.resume.tmp"])
    for (const held of [false, true])
      for (const lockHeld of [false, "idle", true] as const) {
        const entries = [entry(`${B}${suffix}`, { held }), ...(lockHeld === false ? [] : [entry(`${B}.lock`, { held: lockHeld === true })])];
        const d = decisionFor(planGc(input({ entries })), `${B}${suffix}`);
        const expected = held ? "Held" : lockHeld === true ? "Busy" : "Abandoned";
        assert.equal(d.reason, expected, `${suffix} held=${held} lock=${lockHeld}`);
        assert.equal(d.action, expected === "Abandoned" ? "delete" : "keep");
      }
});

test("a resumable .part and its record stay while the image is wanted and not on disk; otherwise they go", () => {
  const want = [{ base: B, imageId: "img-b", retentionMs: H }];
  const table: { wanted: boolean; record: boolean; present: boolean; expected: GcReason }[] = [];
  for (const wanted of [false, true])
    for (const record of [false, true])
      for (const present of [false, true]) table.push({ wanted, record, present, expected: wanted && record && !present ? "Resumable" : "Abandoned" });
  for (const row of table) {
    const entries = [entry(`${B}.part`), entry(`${B}.converted`), ...(row.record ? [entry(`${B}.part.resume`)] : []), ...(row.present ? [entry(B)] : [])];
    const plan = planGc(input({ entries, ...(row.wanted ? { wanted: want } : {}) }));
    for (const name of [`${B}.part`, ...(row.record ? [`${B}.part.resume`] : [])]) {
      const d = decisionFor(plan, name);
      assert.equal(d.reason, row.expected, `${name} ${JSON.stringify(row)}`);
      assert.equal(d.action, row.expected === "Resumable" ? "keep" : "delete");
    }
    // Only the .part and its record are kept for a resume: a half-written conversion always goes.
    assert.equal(decisionFor(plan, `${B}.converted`).reason, "Abandoned");
  }
});

test("sidecars follow their base, and go alone only when orphaned and idle; locks go once nobody holds them", () => {
  const table: { base: "none" | "kept" | "removed"; held: boolean; busy: boolean; reason: GcReason }[] = [];
  for (const base of ["none", "kept", "removed"] as const)
    for (const held of [false, true])
      for (const busy of [false, true]) {
        const reason: GcReason = held ? "Held" : base === "kept" ? "BaseKept" : base === "removed" ? "BaseRemoved" : busy ? "Busy" : "Orphaned";
        table.push({ base, held, busy, reason });
      }
  for (const suffix of [".info.json", ".lock"])
    for (const row of table) {
      const entries = [entry(`${C}${suffix}`, { held: row.held })];
      if (row.base !== "none") entries.push(entry(C));
      if (row.busy) entries.push(entry(`${C}.part`, { held: true }));
      const state = stateWith(row.base === "removed" ? { [C]: { unusedSince: NOW - 48 * H } } : {});
      const plan = planGc(input({ entries, state }));
      const d = decisionFor(plan, `${C}${suffix}`);
      // A held lock makes the base busy, which keeps the base and so the follower.
      const sidecarReason = row.held ? "Held" : row.base === "removed" && row.busy ? "BaseKept" : row.reason;
      const reason = suffix === ".lock" ? (row.held ? "Held" : row.busy ? "Busy" : "Abandoned") : sidecarReason;
      assert.equal(d.reason, reason, `${suffix} ${JSON.stringify(row)}`);
    }
});

test("unknown names, odd file types and GC's own state file are never deleted", () => {
  const entries = [
    entry("lost+found", { type: "directory" }),
    entry("notes.txt"),
    entry(`${A}_20`),
    entry(`${A}.bak`),
    entry(A.toUpperCase()),
    entry(B, { type: "directory" }),
    entry(`${B}.part`, { type: "symlink" }),
    entry(GcStateFileName),
  ];
  const plan = planGc(input({ entries, budget: { limitBytes: 1, highWatermark: 0.5, lowWatermark: 0 } }));
  for (const d of plan.decisions) assert.notEqual(d.action, "delete", d.name);
  assert.equal(decisionFor(plan, "notes.txt").reason, "UnknownName");
  assert.equal(decisionFor(plan, B).reason, "NotARegularFile");
  assert.equal(decisionFor(plan, `${B}.part`).reason, "NotARegularFile");
  assert.equal(decisionFor(plan, GcStateFileName).reason, "GcState");
  assert.equal(plan.usage.cacheBytes, 1000, "unknown files do not count against the cache budget");
});

test("a planted entry at any of our names (link, directory, FIFO, hard link) is reported and kept, never deleted", () => {
  const names = [C, `${C}.part`, `${C}.converted`, `${C}.info.json`, `${C}.info.json.tmp`, `${C}.lock`];
  const kinds: Partial<GcEntry>[] = [{ type: "symlink" }, { type: "directory" }, { type: "other" }, { type: "file", links: 2 }];
  for (const name of names)
    for (const over of kinds) {
      // Expired by every rule that applies to a file of ours, and over budget: only its type keeps it.
      const state = stateWith({ [C]: { unusedSince: NOW - 480 * H } });
      const plan = planGc(input({ entries: [entry(name, over)], state, budget: { limitBytes: 1, highWatermark: 0.5, lowWatermark: 0 } }));
      const d = decisionFor(plan, name);
      const label = `${name.slice(40) || "base"} as ${JSON.stringify(over)}`;
      assert.equal(d.action, "report", label);
      assert.equal(d.reason, "NotARegularFile", label);
      assert.equal(d.kind, "unknown", label);
      if (over.links) assert.match(d.message, /2 names \(a hard link\)/, label);
      assert.equal(plan.usage.cacheBytes, 0, `${label}: not counted as the cache's own bytes`);
    }
});

// ---- Watermarks -------------------------------------------------------------------------------------------

test("above the high watermark, unused bases go least recently used first down to the low watermark", () => {
  const names = ["b1", "b2", "b3", "b4", "b5"].map(baseNameFor);
  const entries = names.map((n) => entry(n, { allocatedBytes: 100 }));
  const state = stateWith(Object.fromEntries(names.map((n, i) => [n, { unusedSince: NOW - (10 - i) * H }])));
  // 500 bytes used; high 450, low 250: the two least recently used (b1, b2) then b3 go, stopping at 200.
  const plan = planGc(input({ entries, state, budget: { limitBytes: 500, highWatermark: 0.9, lowWatermark: 0.5 } }));
  const evicted = plan.decisions.filter((d) => d.reason === "Evicted").map((d) => d.name);
  assert.deepEqual(evicted.sort(), names.slice(0, 3).sort());
  assert.equal(plan.usage.afterBytes, 200);
  assert.equal(plan.usage.overBudget, false);
});

test("below the high watermark nothing is evicted", () => {
  const entries = [entry(A, { allocatedBytes: 100 }), entry(B, { allocatedBytes: 100 })];
  const plan = planGc(input({ entries, budget: { limitBytes: 1000, highWatermark: 0.9, lowWatermark: 0.1 } }));
  assert.equal(plan.decisions.filter((d) => d.action === "delete").length, 0);
});

test("wanted and used bases are never evicted, even when the cache stays over budget", () => {
  const entries = [entry(A, { allocatedBytes: 900 }), entry(B, { allocatedBytes: 900 }), entry(C, { allocatedBytes: 10 })];
  const plan = planGc(
    input({
      entries,
      wanted: [{ base: A, imageId: "img-a", retentionMs: H }],
      uses: [{ base: B, by: "pod ns/p" }],
      budget: { limitBytes: 1000, highWatermark: 0.9, lowWatermark: 0.5 },
    }),
  );
  assert.deepEqual(plan.decisions.filter((d) => d.action === "delete").map((d) => d.name), [C]);
  assert.equal(plan.usage.overBudget, true);
});

test("retention deletions count before eviction, and an evicted base takes its sidecar with it", () => {
  const entries = [entry(A, { allocatedBytes: 400 }), entry(`${A}.info.json`, { allocatedBytes: 10 }), entry(B, { allocatedBytes: 400 }), entry(C, { allocatedBytes: 400 })];
  const state = stateWith({ [A]: { unusedSince: NOW - 30 * H }, [B]: { unusedSince: NOW - 2 * H }, [C]: { unusedSince: NOW - 1 * H } });
  const plan = planGc(input({ entries, state, budget: { limitBytes: 1000, highWatermark: 0.7, lowWatermark: 0.4 } }));
  assert.equal(decisionFor(plan, A).reason, "RetentionExpired");
  assert.equal(decisionFor(plan, `${A}.info.json`).reason, "BaseRemoved");
  assert.equal(decisionFor(plan, B).reason, "Evicted");
  assert.equal(decisionFor(plan, C).reason, "WithinRetention");
  assert.equal(plan.usage.cacheBytes, 1210);
  assert.equal(plan.usage.afterBytes, 400);
});

test("equal unused-since times evict the oldest file first, then by name", () => {
  const entries = [entry(A, { allocatedBytes: 100, mtimeMs: 5 }), entry(B, { allocatedBytes: 100, mtimeMs: 1 }), entry(C, { allocatedBytes: 100, mtimeMs: 5 })];
  const plan = planGc(input({ entries, budget: { limitBytes: 300, highWatermark: 0.5, lowWatermark: 0.5 } }));
  const evicted = plan.decisions.filter((d) => d.reason === "Evicted").map((d) => d.name);
  assert.deepEqual(evicted.sort(), [B, [A, C].sort()[0]].sort());
});

// ---- Properties -------------------------------------------------------------------------------------------

const stems = ["a", "b", "c", "d", "e", "f"].map(baseNameFor);
const suffixes = ["", "", ".info.json", ".part", ".converted", ".info.json.tmp", ".lock", ".bak", "_x"];

const arbEntry = fc.record({
  stem: fc.constantFrom(...stems, "lost+found", "README"),
  suffix: fc.constantFrom(...suffixes),
  type: fc.constantFrom("file", "file", "file", "directory", "symlink"),
  allocatedBytes: fc.nat(1_000_000),
  mtimeMs: fc.integer({ min: NOW - 1000 * H, max: NOW + H }),
  held: fc.boolean(),
});

const arbInput = fc
  .record({
    entries: fc.uniqueArray(arbEntry, { selector: (e) => e.stem + e.suffix, maxLength: 30 }),
    wanted: fc.subarray(stems),
    used: fc.subarray(stems),
    unused: fc.dictionary(fc.constantFrom(...stems), fc.record({ unusedSince: fc.integer({ min: NOW - 200 * H, max: NOW + 10 * H }), retentionMs: fc.integer({ min: 0, max: 100 * H }) })),
    uncertain: fc.boolean(),
    retention: fc.integer({ min: 0, max: 100 * H }),
    budget: fc.option(fc.record({ limitBytes: fc.integer({ min: 1, max: 3_000_000 }), high: fc.double({ min: 0.01, max: 1, noNaN: true }), lowFrac: fc.double({ min: 0, max: 1, noNaN: true }) })),
  })
  .map(
    (r): GcInput => ({
      now: NOW,
      entries: r.entries.map((e) => ({ name: e.stem + e.suffix, type: e.type as GcEntry["type"], allocatedBytes: e.allocatedBytes, mtimeMs: e.mtimeMs, held: e.held })),
      wanted: r.wanted.map((b) => ({ base: b, imageId: `id-${b}`, retentionMs: r.retention })),
      uses: r.used.map((b) => ({ base: b, by: `pod ns/${b}` })),
      uncertainties: r.uncertain ? ["a disk could not be read"] : [],
      state: stateWith(r.unused),
      defaultRetentionMs: r.retention,
      ...(r.budget ? { budget: { limitBytes: r.budget.limitBytes, highWatermark: r.budget.high, lowWatermark: r.budget.high * r.budget.lowFrac } } : {}),
    }),
  );

const deleted = (input: GcInput) => planGc(input).decisions.filter((d) => d.action === "delete");

test("property: a base in use, and its sidecar, are never deleted whatever the inputs", () => {
  fc.assert(
    fc.property(arbInput, (inp) => {
      const present = new Set(inp.entries.filter((e) => e.type === "file").map((e) => e.name));
      const used = new Set(inp.uses.map((u) => u.base).filter((b) => present.has(b)));
      for (const d of deleted(inp)) assert.ok(!(d.base && used.has(d.base) && (d.kind === "base" || d.kind === "sidecar")), d.name);
    }),
    { numRuns: 2000 },
  );
});

test("property: a wanted base is never deleted", () => {
  fc.assert(
    fc.property(arbInput, (inp) => {
      const wanted = new Set(inp.wanted.map((w) => w.base));
      for (const d of deleted(inp)) assert.ok(!(d.kind === "base" && wanted.has(d.name)), d.name);
    }),
    { numRuns: 1000 },
  );
});

test("property: unknown names are reported, never deleted; every entry gets exactly one decision", () => {
  fc.assert(
    fc.property(arbInput, (inp) => {
      const plan = planGc(inp);
      assert.equal(plan.decisions.length, inp.entries.length);
      assert.deepEqual(new Set(plan.decisions.map((d) => d.name)), new Set(inp.entries.map((e) => e.name)));
      for (const d of plan.decisions) if (d.kind === "unknown") assert.equal(d.action, "report");
      for (const d of plan.decisions) if (d.action === "report") assert.equal(d.kind, "unknown");
    }),
    { numRuns: 1000 },
  );
});

test("property: held files, and any file of a base with a held work file, are never deleted", () => {
  fc.assert(
    fc.property(arbInput, (inp) => {
      const held = new Set(inp.entries.filter((e) => e.held).map((e) => e.name));
      const busy = new Set(inp.entries.filter((e) => e.held && /\.(part|converted|info\.json\.tmp|lock)$/.test(e.name) && e.type === "file").map((e) => e.name.slice(0, 40)));
      for (const d of deleted(inp)) {
        assert.ok(!held.has(d.name), `held ${d.name}`);
        assert.ok(!(d.base && busy.has(d.base)), `busy ${d.name}`);
      }
    }),
    { numRuns: 1000 },
  );
});

test("property: no base is deleted while uses are uncertain", () => {
  fc.assert(
    fc.property(arbInput, (inp) => {
      if (inp.uncertainties.length === 0) return;
      for (const d of deleted(inp)) assert.notEqual(d.kind, "base");
    }),
    { numRuns: 500 },
  );
});

test("property: retention holds unless the cache is above its high watermark", () => {
  fc.assert(
    fc.property(arbInput, (inp) => {
      for (const d of deleted(inp)) {
        if (d.kind !== "base") continue;
        const rec = inp.state.bases[d.name];
        const retention = rec?.retentionMs ?? inp.defaultRetentionMs;
        const unusedSince = rec?.unusedSince ?? inp.now;
        if (d.reason === "RetentionExpired") assert.ok(inp.now - unusedSince >= retention);
        else assert.equal(d.reason, "Evicted");
        if (d.reason === "Evicted") assert.ok(inp.budget, "eviction needs a budget");
      }
    }),
    { numRuns: 1000 },
  );
});

test("property: eviction is least recently used first and stops at the low watermark", () => {
  fc.assert(
    fc.property(arbInput, (inp) => {
      const plan = planGc(inp);
      const evicted = plan.decisions.filter((d) => d.reason === "Evicted");
      const spared = plan.decisions.filter((d) => d.reason === "WithinRetention");
      const key = (d: GcDecision) => d.unusedSince ?? inp.now;
      for (const e of evicted) for (const s of spared) assert.ok(key(e) <= key(s), `${e.name} evicted before older ${s.name}`);
      if (evicted.length > 0 && plan.usage.lowBytes !== undefined) {
        // Evicting one fewer would have left the cache above the low mark.
        const last = evicted.reduce((a, b) => (key(a) > key(b) || (key(a) === key(b) && a.name > b.name) ? a : b));
        assert.ok(plan.usage.afterBytes + last.bytes > plan.usage.lowBytes || last.bytes === 0);
      }
      assert.equal(plan.usage.overBudget, plan.usage.highBytes !== undefined && plan.usage.afterBytes > plan.usage.highBytes);
    }),
    { numRuns: 1000 },
  );
});

test("property: a dry run returns the same decisions", () => {
  fc.assert(
    fc.property(arbInput, (inp) => {
      const real = planGc(inp);
      const dry = planGc({ ...inp, dryRun: true });
      assert.equal(dry.dryRun, true);
      assert.deepEqual(dry.decisions, real.decisions);
      assert.deepEqual(dry.usage, real.usage);
    }),
    { numRuns: 500 },
  );
});

test("property: the plan is a pure function of its input and a second pass deletes nothing new too early", () => {
  fc.assert(
    fc.property(arbInput, (inp) => {
      assert.deepEqual(planGc(inp), planGc(structuredClone(inp)));
      const first = planGc(inp);
      const gone = new Set(first.decisions.filter((d) => d.action === "delete").map((d) => d.name));
      const again = planGc({ ...inp, entries: inp.entries.filter((e) => !gone.has(e.name)), state: first.state });
      for (const d of again.decisions) if (d.kind === "base" && d.action === "delete") assert.equal(d.reason, "Evicted", d.name);
    }),
    { numRuns: 500 },
  );
});

test("property: among unused bases under pressure, every evicted base was unused at least as long as every spared one", () => {
  const arb = fc.record({
    bases: fc.uniqueArray(fc.record({ stem: fc.constantFrom(...stems), bytes: fc.integer({ min: 1, max: 1000 }), since: fc.integer({ min: 0, max: 20 }) }), { selector: (b) => b.stem, minLength: 2 }),
    limit: fc.integer({ min: 100, max: 6000 }),
    high: fc.double({ min: 0.1, max: 1, noNaN: true }),
    lowFrac: fc.double({ min: 0, max: 1, noNaN: true }),
  });
  fc.assert(
    fc.property(arb, (r) => {
      const plan = planGc(
        input({
          entries: r.bases.map((b) => entry(b.stem, { allocatedBytes: b.bytes })),
          state: stateWith(Object.fromEntries(r.bases.map((b) => [b.stem, { unusedSince: NOW - b.since * H }]))),
          budget: { limitBytes: r.limit, highWatermark: r.high, lowWatermark: r.high * r.lowFrac },
        }),
      );
      const evicted = plan.decisions.filter((d) => d.reason === "Evicted");
      const spared = plan.decisions.filter((d) => d.reason === "WithinRetention");
      for (const e of evicted) for (const s of spared) assert.ok((e.unusedSince ?? 0) <= (s.unusedSince ?? 0), `${e.name} evicted before older ${s.name}`);
      const used = r.bases.reduce((n, b) => n + b.bytes, 0);
      if (used > plan.usage.highBytes!) assert.ok(plan.usage.afterBytes <= plan.usage.lowBytes! || spared.length === 0);
      else assert.equal(evicted.length, 0);
    }),
    { numRuns: 1000 },
  );
});

test("room for an arriving image: evict least recently used, or nothing at all when it cannot fit anyway", () => {
  const entries = [entry(A, { allocatedBytes: 300 }), entry(B, { allocatedBytes: 300 }), entry(C, { allocatedBytes: 300 })];
  const state = stateWith({ [A]: { unusedSince: NOW - 3 * H }, [B]: { unusedSince: NOW - 2 * H } });
  const budget = { limitBytes: 1000, highWatermark: 0.9, lowWatermark: 0.5 };
  const uses = [{ base: C, by: "pod ns/p" }];
  // 900 used + 200 coming > 900 high: A then B go (down to 300 + 200 <= 500).
  const fit = planGc(input({ entries, state, uses, budget, reserveBytes: 200 }));
  assert.deepEqual(fit.decisions.filter((d) => d.reason === "Evicted").map((d) => d.name).sort(), [A, B].sort());
  assert.equal(fit.usage.fits, true);
  // 800 coming: even with A and B gone, 300 + 800 > 1000: nothing is evicted.
  const none = planGc(input({ entries, state, uses, budget, reserveBytes: 800 }));
  assert.equal(none.decisions.filter((d) => d.action === "delete").length, 0);
  assert.equal(none.usage.fits, false);
  // Without a reserve the cache is at the high mark, not above it: nothing goes.
  assert.equal(planGc(input({ entries, state, uses, budget })).decisions.filter((d) => d.action === "delete").length, 0);
});

test("imagesFromAnnotation takes exact, comma-separated ids and ignores blanks", () => {
  assert.deepEqual(imagesFromAnnotation(undefined), []);
  assert.deepEqual(imagesFromAnnotation(""), []);
  assert.deepEqual(imagesFromAnnotation(" a, b ,,a,C "), ["a", "b", "C"]);
});

// ---- Pointers: `<sha1(id)>.current` follows whether the id is wanted, whatever version its base is ---------

test("a tracked image's pointer is kept while the id is wanted here, held or not, and removed after", () => {
  const versioned = baseNameFor("img-a@0123456789ab");
  const pointer = `${A}.current`;
  const wantedA = [{ base: versioned, imageId: "img-a", retentionMs: 1 * H }];
  const cases: [string, Partial<GcInput>, boolean, "keep" | "delete", GcReason][] = [
    ["wanted, its base a version", { wanted: wantedA }, false, "keep", "Tracked"],
    ["not wanted", { wanted: [{ base: B, imageId: "img-b", retentionMs: H }] }, false, "delete", "Untracked"],
    ["not wanted but held", {}, true, "keep", "Held"],
    ["not wanted, some use unknown", { uncertainties: ["pods not listed"] }, false, "delete", "Untracked"],
  ];
  for (const [name, over, held, action, reason] of cases) {
    const plan = planGc(input({ entries: [entry(pointer, { held }), entry(versioned)], ...over }));
    const d = decisionFor(plan, pointer);
    assert.equal(d.kind, "pointer", name);
    assert.equal(d.action, action, name);
    assert.equal(d.reason, reason, name);
  }
});

test("a pointer's name is trusted only as a name: a directory or symlink called `<sha1>.current` is reported, never deleted", () => {
  const pointer = `${A}.current`;
  for (const type of ["directory", "symlink"] as const) {
    const d = decisionFor(planGc(input({ entries: [entry(pointer, { type })] })), pointer);
    assert.notEqual(d.action, "delete", type);
  }
});
