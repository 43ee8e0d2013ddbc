/**
 * basecache's alerts: promtool checks the rule file and runs its unit tests (test/prometheus/), every alert has a
 * firing test, a runbook section and only metrics our processes export, and the PrometheusRule of deploy/monitoring
 * and of the chart hold exactly the plain file's rules. promtool is Debian's `prometheus` package.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { parse } from "yaml";
import { createAgentMetrics } from "../../src/agent/metrics.js";
import { registerImageCacheGauges } from "../../src/controller/cache-metrics.js";
import { createControllerMetrics } from "../../src/controller/metrics.js";
import { createRegistry } from "../../src/lib/metrics.js";
import { chartDir, renderChart } from "../harness/helm.js";
import { parseManifests, readManifests } from "../harness/manifests.js";

const repoRoot = resolve(fileURLToPath(new URL("../..", import.meta.url)));
const rulesFile = join(repoRoot, "deploy/monitoring/basecache.rules.yaml");
const rulesTest = join(repoRoot, "test/prometheus/basecache.rules.test.yaml");
const runbookBase = "https://github.com/basecache/basecache/blob/main/docs/operations.md";

interface Rule {
  alert: string;
  expr: string;
  for?: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}
interface RuleFile {
  groups: { name: string; rules: Rule[] }[];
}

async function promtool(args: string[], cwd: string): Promise<{ exitCode: number | undefined; output: string }> {
  const res = await execa("promtool", args, { cwd, reject: false, all: true, stdin: "ignore", timeout: 120_000 });
  if ((res as { code?: string }).code === "ENOENT") assert.fail("promtool is not installed: apt-get install prometheus (see README.md, requirements)");
  return { exitCode: res.exitCode, output: res.all ?? "" };
}

async function rules(): Promise<RuleFile> {
  return parse(await readFile(rulesFile, "utf8")) as RuleFile;
}

function alerts(file: RuleFile): Rule[] {
  return file.groups.flatMap((g) => g.rules);
}

/** GitHub's anchor for a Markdown heading. */
function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, "")
    .replace(/ /g, "-");
}

/** Every metric family name our processes export, histograms and summaries with their series suffixes. */
async function exportedNames(): Promise<Set<string>> {
  const agent = createAgentMetrics().registry;
  const controller = createRegistry();
  createControllerMetrics(controller);
  registerImageCacheGauges(controller, () => undefined);
  const names = new Set<string>();
  for (const registry of [agent, controller]) {
    for (const m of await registry.getMetricsAsJSON()) {
      names.add(m.name);
      if (String(m.type) === "histogram") for (const s of ["_bucket", "_sum", "_count"]) names.add(`${m.name}${s}`);
    }
  }
  return names;
}

describe("the alert rules", () => {
  test("pass promtool check rules", async () => {
    const r = await promtool(["check", "rules", rulesFile], repoRoot);
    assert.equal(r.exitCode, 0, r.output);
    assert.match(r.output, /SUCCESS: 6 rules found/);
  });

  test("pass their promtool unit tests", async () => {
    const r = await promtool(["test", "rules", rulesTest], join(repoRoot, "test/prometheus"));
    assert.equal(r.exitCode, 0, r.output);
    assert.match(r.output, /SUCCESS/);
  });

  test("each alert has a test where it fires", async () => {
    const t = parse(await readFile(rulesTest, "utf8")) as { tests: { alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[] }[] };
    const firing = new Set(t.tests.flatMap((x) => x.alert_rule_test ?? []).filter((a) => a.exp_alerts.length > 0).map((a) => a.alertname));
    for (const a of alerts(await rules())) assert.ok(firing.has(a.alert), `${a.alert} has a test case in which it fires`);
  });

  test("each alert names its severity, a summary, a description and a runbook section in docs/operations.md", async () => {
    const doc = await readFile(join(repoRoot, "docs/operations.md"), "utf8");
    const anchors = new Set([...doc.matchAll(/^#{2,4} (.+)$/gm)].map((m) => slug(m[1]!)));
    for (const a of alerts(await rules())) {
      assert.match(a.labels.severity ?? "", /^(warning|critical)$/, a.alert);
      assert.ok(a.annotations.summary && a.annotations.description, `${a.alert} has a summary and a description`);
      const url = a.annotations.runbook_url ?? "";
      assert.ok(url.startsWith(`${runbookBase}#`), `${a.alert}: ${url}`);
      const anchor = url.slice(runbookBase.length + 1);
      assert.equal(anchor, a.alert.toLowerCase(), `${a.alert}'s runbook is the section named after it`);
      assert.ok(anchors.has(anchor), `docs/operations.md has a section "${a.alert}"`);
    }
  });

  test("use only metrics that the agent and the controller export", async () => {
    const exported = await exportedNames();
    for (const a of alerts(await rules())) {
      const used = [...a.expr.matchAll(/\bbasecache_[a-z0-9_]+/g)].map((m) => m[0]);
      assert.ok(used.length > 0, a.alert);
      for (const name of used) assert.ok(exported.has(name), `${a.alert} uses ${name}, which nothing exports`);
    }
  });
});

describe("the PrometheusRule", () => {
  test("of deploy/monitoring holds the plain file's rules, and stays out of deploy/'s default resources", async () => {
    const [rule] = await readManifests([join(repoRoot, "deploy/monitoring/prometheus-rule.yaml")]);
    assert.equal(rule?.kind, "PrometheusRule");
    assert.deepEqual(rule.spec, await rules(), "run hack/sync-rules.sh");
    const kustomization = await readFile(join(repoRoot, "deploy/Kustomization"), "utf8");
    assert.doesNotMatch(kustomization, /monitoring/, "applying deploy/ must not need the Prometheus Operator's CRDs");
  });

  test("of the chart is off by default and, when on, holds the same rules", async () => {
    assert.equal(parseManifests(await renderChart()).filter((o) => o.kind === "PrometheusRule").length, 0);
    const copy = await readFile(join(chartDir, "files/basecache.rules.yaml"), "utf8");
    assert.ok(copy === (await readFile(rulesFile, "utf8")), "charts/basecache/files/basecache.rules.yaml differs; run hack/sync-rules.sh");
    const objects = parseManifests(await renderChart("monitoring", ["metrics.prometheusRule.enabled=true", "metrics.prometheusRule.labels.release=prom"]));
    const rule = objects.find((o) => o.kind === "PrometheusRule");
    assert.ok(rule);
    assert.equal(rule.metadata.namespace, "monitoring");
    assert.equal(rule.metadata.labels?.release, "prom");
    assert.deepEqual(rule.spec, await rules());
  });

  test("of the chart points the runbooks where asked", async () => {
    const objects = parseManifests(await renderChart("basecache-system", ["metrics.prometheusRule.enabled=true", "metrics.prometheusRule.runbookBaseUrl=https://wiki.example/basecache"]));
    const spec = objects.find((o) => o.kind === "PrometheusRule")?.spec as RuleFile;
    const urls = alerts(spec).map((a) => a.annotations.runbook_url);
    assert.deepEqual(urls, alerts(await rules()).map((a) => `https://wiki.example/basecache#${a.alert.toLowerCase()}`));
  });
});
