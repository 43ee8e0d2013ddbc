/**
 * A real Prometheus scrapes basecache on the real node and evaluates deploy/monitoring/basecache.rules.yaml:
 * the agent and both controller pods are discovered through the metrics Services' EndpointSlices (see
 * test/harness/node/prometheus.ts for why not by Prometheus itself) and are up, every rule is
 * evaluated without error, the one leader is seen, and a real failure (an ImageCache whose checksum does not
 * match its image) makes BasecacheImagesFailing active (pending as soon as its expression is true; its `for:`
 * is not waited for) while BasecacheNoControllerLeader stays inactive.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { eventually } from "../harness/eventually.js";
import { unavailableReason } from "../harness/node/node.js";
import { prometheusUnavailable, startPrometheus, type TestPrometheus } from "../harness/node/prometheus.js";
import { installDeploy, repoRoot, startNodeTestbed, stopNodeTestbed, type NodeTestbed } from "../harness/node/testbed.js";
import { imageCache, Namespace } from "../harness/node/workloads.js";

const skip = (await unavailableReason()) ?? (await prometheusUnavailable());
const RulesFile = join(repoRoot, "deploy/monitoring/basecache.rules.yaml");
const AlertNames = ["BasecacheImagesFailing", "BasecacheFetchStuck", "BasecacheCacheOverHighWatermark", "BasecacheGCRefusing", "BasecacheBaseCorrupt", "BasecacheNoControllerLeader"];
const BadCache = "wrong-checksum";

interface Target {
  labels: Record<string, string>;
  health: string;
  lastError: string;
}
interface Rule {
  name: string;
  type: string;
  health: string;
  lastError?: string;
  lastEvaluation: string;
}
interface Alert {
  labels: Record<string, string>;
  state: string;
}

describe("a real Prometheus scrapes the agent and the controllers and evaluates the alert rules", { skip: skip ? `skipped: ${skip}` : false }, () => {
  let tb: NodeTestbed;
  let prom: TestPrometheus | undefined;

  before(async () => {
    tb = await startNodeTestbed();
    tb.origin.serve("/images/good.qcow2", { file: await tb.images.qcow2("good.qcow2", 16) });
    await installDeploy(tb);
    prom = await startPrometheus(tb.node, Namespace, RulesFile);
  });

  after(async () => {
    await prom?.stop();
    await stopNodeTestbed(tb);
  });

  const api = <T>(path: string): Promise<T> => {
    assert.ok(prom);
    return prom.api<T>(path);
  };
  const activeAlerts = async (): Promise<Alert[]> => (await api<{ alerts: Alert[] }>("/api/v1/alerts")).alerts;

  test("the agent and both controller pods are discovered through the metrics Services and are up", async () => {
    await eventually(
      async () => {
        const found = await prom?.discover();
        assert.deepEqual(found?.map((t) => t.component).sort(), ["agent", "controller", "controller"], JSON.stringify(found));
      },
      { timeoutMs: 60_000, intervalMs: 1000, description: "three targets in the EndpointSlices" },
    );
    await eventually(
      async () => {
        const { activeTargets } = await api<{ activeTargets: Target[] }>("/api/v1/targets?state=active");
        const up = (component: string) => activeTargets.filter((t) => t.labels.component === component).map((t) => [t.health, t.lastError]);
        assert.deepEqual(up("agent"), [["up", ""]], JSON.stringify(activeTargets));
        assert.deepEqual(up("controller"), [["up", ""], ["up", ""]], JSON.stringify(activeTargets));
        assert.deepEqual(activeTargets.filter((t) => t.labels.component === "agent").map((t) => t.labels.node), [tb.node.nodeName]);
      },
      { timeoutMs: 120_000, intervalMs: 1000, description: "three basecache targets up" },
    );
  });

  test("every rule of the rule file is loaded and evaluated without error; one leader is seen and no alert is active", async () => {
    await eventually(
      async () => {
        const { groups } = await api<{ groups: { name: string; file: string; rules: Rule[] }[] }>("/api/v1/rules");
        assert.deepEqual(groups.map((g) => [g.name, g.file]), [["basecache", RulesFile]]);
        const rules = groups.flatMap((g) => g.rules);
        assert.deepEqual(rules.map((r) => [r.type, r.name]), AlertNames.map((n) => ["alerting", n]));
        for (const r of rules) {
          assert.equal(r.health, "ok", `${r.name}: ${r.lastError ?? ""}`);
          assert.equal(r.lastError ?? "", "", r.name);
          assert.ok(!r.lastEvaluation.startsWith("0001-"), `${r.name} evaluated`);
        }
      },
      { timeoutMs: 60_000, intervalMs: 1000, description: "rules evaluated" },
    );
    const leaders = await eventually(
      async () => {
        const { result } = await api<{ result: { value: [number, string] }[] }>(`/api/v1/query?query=${encodeURIComponent("sum(basecache_controller_is_leader)")}`);
        assert.equal(result[0]?.value[1], "1", JSON.stringify(result));
        return result;
      },
      { timeoutMs: 60_000, intervalMs: 1000, description: "one leader scraped" },
    );
    assert.equal(leaders.length, 1);
    // Before the first scrape of a controller no leader is seen, so BasecacheNoControllerLeader may be pending
    // for a moment; with the leader scraped the next evaluation resolves it.
    await eventually(async () => assert.deepEqual(await activeAlerts(), []), { timeoutMs: 30_000, intervalMs: 1000, description: "no alert active" });
  });

  test("an ImageCache with a wrong checksum makes BasecacheImagesFailing active; BasecacheNoControllerLeader stays inactive", async () => {
    const bad = imageCache(BadCache, "bad-image", tb.origin.url("/images/good.qcow2")) as { spec: { images: { checksum?: string }[] } };
    const [image] = bad.spec.images;
    assert.ok(image);
    image.checksum = `sha256:${"0".repeat(64)}`;
    await writeFile(join(tb.dir, "bad.json"), JSON.stringify(bad));
    await tb.node.kubectl(["apply", "-f", join(tb.dir, "bad.json")]);
    const alerts = await eventually(
      async () => {
        const all = await activeAlerts();
        const failing = all.filter((a) => a.labels.alertname === "BasecacheImagesFailing");
        assert.deepEqual(failing.map((a) => a.labels.imagecache), [BadCache], JSON.stringify(all));
        assert.ok(["pending", "firing"].includes(failing[0]?.state ?? ""), JSON.stringify(failing));
        return all;
      },
      { timeoutMs: 240_000, intervalMs: 1000, description: "BasecacheImagesFailing active" },
    );
    assert.deepEqual(alerts.map((a) => a.labels.alertname), ["BasecacheImagesFailing"], "no other alert, BasecacheNoControllerLeader among them");
    // The failure is the real one: the ImageCache's status counts the failing image.
    const ic = JSON.parse(await tb.node.kubectl(["get", "imagecache", BadCache, "-o", "json"])) as { status?: { failedCount?: number } };
    assert.equal(ic.status?.failedCount, 1);
  });
});
