/**
 * deploy/ and deploy/examples/ against a real API server, and the rules the manifests keep: one image
 * reference that follows package.json's version, and the tightest securityContext the job allows.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";
import { AppsV1Api, CoreV1Api, type KubeConfig, type V1Container, type V1PodSpec } from "@kubernetes/client-node";
import { startControlPlane, type ControlPlane } from "../harness/control-plane.js";
import { applyObjects, expandedArgs, readManifests, type ManifestObject } from "../harness/manifests.js";
import { containerUser, refusedSteps, shellScript } from "../harness/file-privileges.js";
import { parseAgentFlags } from "../../src/cli/commands/agent.js";
import { parseControllerFlags } from "../../src/cli/commands/controller.js";
import { placementLabel } from "../../src/core/placement-keys.js";

const repoRoot = resolve(fileURLToPath(new URL("../..", import.meta.url)));
const deployDir = join(repoRoot, "deploy");

async function readYaml<T>(path: string): Promise<T> {
  return parse(await readFile(path, "utf8")) as T;
}

function podSpecs(objects: ManifestObject[]): { owner: string; spec: V1PodSpec }[] {
  const out: { owner: string; spec: V1PodSpec }[] = [];
  for (const o of objects) {
    if (o.kind === "Pod") out.push({ owner: `Pod ${o.metadata.name}`, spec: o.spec as V1PodSpec });
    const template = (o.spec as { template?: { spec?: V1PodSpec } } | undefined)?.template?.spec;
    if (template) out.push({ owner: `${o.kind} ${o.metadata.name}`, spec: template });
  }
  return out;
}

function containersOf(spec: V1PodSpec): V1Container[] {
  return [...(spec.initContainers ?? []), ...spec.containers];
}

describe("deploy/, read as files", () => {
  test("uses one image reference, localhost/basecache:<package.json version>, which Kustomization and the chart share", async () => {
    const pkg = await readYaml<{ version: string }>(join(repoRoot, "package.json"));
    const chart = await readYaml<{ version: string; appVersion: string }>(join(repoRoot, "charts/basecache/Chart.yaml"));
    const values = await readYaml<{ image: { repository: string; tag: string } }>(join(repoRoot, "charts/basecache/values.yaml"));
    const kustomization = await readYaml<{ images: { name: string; newName: string; newTag: string }[] }>(join(deployDir, "Kustomization"));
    assert.equal(chart.version, pkg.version);
    assert.equal(chart.appVersion, pkg.version);
    assert.equal(values.image.tag, "", "the chart's tag defaults to appVersion");
    assert.deepEqual(kustomization.images, [{ name: values.image.repository, newName: values.image.repository, newTag: pkg.version }]);
    const want = `${values.image.repository}:${pkg.version}`;
    const objects = await readManifests([deployDir, join(deployDir, "examples")]);
    const ours = podSpecs(objects).flatMap(({ spec }) => containersOf(spec)).filter((c) => c.image?.includes("basecache"));
    assert.ok(ours.length >= 5, "controller, agent, its init container, and the VM pod's two init containers");
    for (const c of ours) assert.equal(c.image, want, `container ${c.name}`);
  });

  test("the image runs as the non-root user the manifests name, with qemu-img and a production install", async () => {
    const containerfile = await readFile(join(repoRoot, "Containerfile"), "utf8");
    const user = /^USER (\d+):(\d+)$/m.exec(containerfile);
    assert.ok(user, "the Containerfile sets a numeric USER");
    assert.match(containerfile, new RegExp(`useradd --uid ${user[1] ?? ""} --gid ${user[2] ?? ""}`));
    assert.match(containerfile, /apt-get install [^\n]*qemu-utils util-linux/);
    assert.match(containerfile, /npm ci --omit=dev/);
    assert.match(containerfile, /npm run build/);
    const objects = await readManifests([deployDir]);
    for (const { owner, spec } of podSpecs(objects)) {
      for (const c of spec.containers) {
        assert.equal(c.securityContext?.runAsUser ?? spec.securityContext?.runAsUser, Number(user[1]), `${owner} ${c.name} runs as the image's user`);
      }
      for (const c of spec.initContainers ?? []) assert.match((c.args ?? []).join(" "), new RegExp(`chown ${user[1] ?? ""}:${user[2] ?? ""} `), `${owner} ${c.name} hands the dir to it`);
    }
  });

  test("the controller and the agent accept the flags the manifests give them", async () => {
    const objects = await readManifests([deployDir]);
    const deployment = objects.find((o) => o.kind === "Deployment");
    const ds = objects.find((o) => o.kind === "DaemonSet");
    assert.ok(deployment && ds);
    const [cmd, ...controllerArgs] = expandedArgs(deployment, "controller", { POD_NAMESPACE: "basecache-system" });
    assert.equal(cmd, "controller");
    const controller = parseControllerFlags(controllerArgs, {});
    assert.ok(controller !== "help");
    assert.equal(controller.leaderElect, true);
    assert.equal(controller.leaseNamespace, "basecache-system");
    assert.equal(controller.leaseName, "basecache-controller", "the Lease the leader-election Role names");
    const [agentCmd, ...agentArgs] = expandedArgs(ds, "agent", {});
    assert.equal(agentCmd, "agent");
    const agent = parseAgentFlags(agentArgs, { NODE_NAME: "node-1" });
    assert.ok(agent !== "help");
    assert.equal(agent.node, "node-1", "the node name comes from NODE_NAME");
    assert.equal(agent.baseDir, "/var/lib/basecache/_base");
    assert.equal(agent.instancesDir, "/var/lib/basecache/instances");
  });

  test("Kustomization lists every manifest in deploy/", async () => {
    const kustomization = await readYaml<{ resources: string[] }>(join(deployDir, "Kustomization"));
    const files = (await readdir(deployDir)).filter((f) => f.endsWith(".yaml")).sort();
    assert.deepEqual([...kustomization.resources].sort(), files);
  });

  test("every container drops all capabilities, forbids privilege escalation, has a read-only root and resource limits", async () => {
    const objects = await readManifests([deployDir]);
    const specs = podSpecs(objects);
    assert.deepEqual(specs.map((s) => s.owner).sort(), ["DaemonSet basecache-agent", "Deployment basecache-controller"]);
    for (const { owner, spec } of specs) {
      assert.equal(spec.securityContext?.seccompProfile?.type, "RuntimeDefault", `${owner} seccomp`);
      assert.notEqual(spec.hostNetwork, true);
      assert.notEqual(spec.hostPID, true);
      for (const c of containersOf(spec)) {
        const where = `${owner} container ${c.name}`;
        const sc = c.securityContext;
        assert.equal(sc?.allowPrivilegeEscalation, false, where);
        assert.equal(sc?.readOnlyRootFilesystem, true, where);
        assert.notEqual(sc?.privileged, true, where);
        assert.deepEqual(sc?.capabilities?.drop, ["ALL"], where);
        assert.ok(c.resources?.requests?.cpu && c.resources.requests.memory, `${where} requests`);
        assert.ok(c.resources?.limits?.memory, `${where} memory limit`);
        const root = (sc?.runAsUser ?? spec.securityContext?.runAsUser) === 0;
        if (root) {
          // Only the init container that hands the hostPath base dir to the agent's user runs as root.
          assert.equal(c.name, "prepare-dirs", `${where} runs as root`);
          assert.ok(spec.initContainers?.includes(c), `${where} is an init container`);
          assert.deepEqual(sc?.capabilities?.add, ["CHOWN"], `${where} adds only CHOWN`);
        } else {
          assert.equal(sc?.runAsNonRoot ?? spec.securityContext?.runAsNonRoot, true, `${where} runAsNonRoot`);
          assert.equal(sc?.capabilities?.add, undefined, `${where} adds no capability`);
        }
      }
      for (const c of spec.containers) {
        assert.ok(c.livenessProbe && c.readinessProbe, `${owner} container ${c.name} has probes`);
      }
    }
  });

  test("every init container's script works on a restart too, when the hostPath dirs already belong to the agent", async () => {
    const objects = await readManifests([deployDir]);
    let scripts = 0;
    for (const { owner, spec } of podSpecs(objects)) {
      for (const c of spec.initContainers ?? []) {
        const script = shellScript(c);
        assert.ok(script, `${owner} ${c.name} runs one sh -c script`);
        scripts++;
        assert.deepEqual(refusedSteps(script, containerUser(c, spec.securityContext)), [], `${owner} ${c.name}`);
      }
    }
    assert.ok(scripts >= 1, "the agent's prepare-dirs is checked");
  });

  test("the script check refuses a chmod by root with only CHOWN on a dir it has not taken back", () => {
    // The first version of prepare-dirs: fine on a fresh node, Init:CrashLoopBackOff on every restart.
    const rootChownOnly = { uid: 0, capabilities: ["CHOWN"] };
    const refused = refusedSteps("chmod 0755 /b && chown 65532:65532 /b", rootChownOnly);
    assert.equal(refused.length, 1);
    assert.match(refused[0] ?? "", /chmod 0755 \/b.*without CAP_FOWNER/);
    assert.deepEqual(refusedSteps("chown 0:0 /b && chmod 0755 /b && chown 65532:65532 /b", rootChownOnly), []);
    assert.equal(refusedSteps("chown 0:0 /b && chmod 0755 /b", { uid: 0, capabilities: [] }).length, 2);
  });

  test("the agent gets its node name from the downward API and mounts the instances dir read-only", async () => {
    const objects = await readManifests([deployDir]);
    const ds = objects.find((o) => o.kind === "DaemonSet");
    const spec = (ds?.spec as { template: { spec: V1PodSpec } }).template.spec;
    const agent = spec.containers.find((c) => c.name === "agent");
    assert.deepEqual(agent?.env?.find((e) => e.name === "NODE_NAME")?.valueFrom?.fieldRef?.fieldPath, "spec.nodeName");
    const mounts = new Map((agent?.volumeMounts ?? []).map((m) => [m.name, m]));
    assert.equal(mounts.get("instances-dir")?.readOnly, true);
    assert.notEqual(mounts.get("base-dir")?.readOnly, true);
    for (const v of spec.volumes ?? []) {
      if (v.hostPath) assert.equal(mounts.get(v.name)?.mountPath, v.hostPath.path, `${v.name} is mounted at its host path`);
    }
  });

  test("the VM pod example declares the image it boots from, which the example ImageCache caches", async () => {
    const [cache] = await readManifests([join(deployDir, "examples/imagecache.yaml")]);
    const [pod] = await readManifests([join(deployDir, "examples/vm-pod.yaml")]);
    assert.ok(cache && pod);
    const ids = (cache.spec as { images: { id: string }[] }).images.map((i) => i.id);
    const declared = (pod.metadata.annotations?.["basecache.io/images"] ?? "").split(",");
    assert.deepEqual(declared, ids);
    const init = (pod.spec as V1PodSpec).initContainers?.find((c) => c.name === "instance-disk");
    const script = (init?.args ?? []).join(" ");
    assert.match(script, new RegExp(`basecache disk create --base-dir /var/lib/basecache/_base --id ${ids[0] ?? ""} `));
    // It waits for a node where the ImageCache is Ready: the controller's placement label.
    const terms = (pod.spec as V1PodSpec).affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms;
    assert.deepEqual(terms, [{ matchExpressions: [{ key: placementLabel(cache.metadata.name), operator: "In", values: ["ready"] }] }]);
  });
});

describe("deploy/, applied to a real API server", () => {
  let cp: ControlPlane;
  let admin: KubeConfig;

  before(async () => {
    cp = await startControlPlane();
    admin = cp.adminConfig();
    await cp.applyCrds();
  });

  after(async () => {
    await cp?.stop();
  });

  test("applies in file order, as `kubectl apply -f crds/ -f deploy/` does, and creates every object", async () => {
    const objects = await readManifests([deployDir]);
    await applyObjects(admin, objects);
    const apps = admin.makeApiClient(AppsV1Api);
    const deployment = await apps.readNamespacedDeployment({ namespace: "basecache-system", name: "basecache-controller" });
    assert.equal(deployment.spec?.replicas, 2);
    const ds = await apps.readNamespacedDaemonSet({ namespace: "basecache-system", name: "basecache-agent" });
    assert.equal(ds.spec?.template.spec?.serviceAccountName, "basecache-agent");
  });

  test("the examples pass a server-side dry run", async () => {
    // This control plane runs no kube-controller-manager, which would create the "default" ServiceAccount.
    await admin.makeApiClient(CoreV1Api).createNamespacedServiceAccount({ namespace: "default", body: { metadata: { name: "default" } } });
    await applyObjects(admin, await readManifests([join(deployDir, "examples")]), { dryRun: true });
  });
});
