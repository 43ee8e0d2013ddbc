/**
 * The test bed of the agent's integration tests, one per test file: a real control plane with the CRDs and the
 * agent's identity from deploy/, an admin client, an HTTP origin and a directory of test images. Nodes are made
 * through it (the Node object, the node's dirs, a kubeconfig bound to the node) and agents started through it,
 * so that `stop()` ends every agent, runs the file's own cleanups (an unmount) and removes every dir it made.
 * The agents may not read pods: a file whose GC must see pods starts the controller's pod-uses part through it.
 */
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { startControlPlane, type ControlPlane } from "./control-plane.js";
import { agentKubeconfig, applyAgentIdentity, makeNodeDirs, removeNodeDirs, startAgent, type AgentProcess, type NodeDirs } from "./agent-process.js";
import { ImageDir } from "./images.js";
import { startController, type ControllerProcess } from "./controller-process.js";
import { Api } from "./kube-api.js";
import { applyObjects, readManifests } from "./manifests.js";
import { Origin } from "./origin.js";

const repoRoot = resolve(fileURLToPath(new URL("../..", import.meta.url)));

/** A simulated node: its name, its dirs and the kubeconfig of its agent. */
export interface TestNode {
  name: string;
  dirs: NodeDirs;
  kubeconfig: string;
}

export interface LaunchOptions {
  args?: string[];
  env?: Record<string, string>;
  /** Leave out the address flags, so that the agent serves on its defaults. */
  defaultAddrs?: boolean;
}

export class AgentTestbed {
  private readonly agents: AgentProcess[] = [];
  private readonly controllers: ControllerProcess[] = [];
  private controllerIdentity: string | undefined;
  private readonly nodes: TestNode[] = [];
  private readonly cleanups: (() => Promise<unknown>)[] = [];

  private constructor(
    readonly cp: ControlPlane,
    readonly admin: Api,
    readonly origin: Origin,
    readonly images: ImageDir,
  ) {}

  static async start(): Promise<AgentTestbed> {
    const cp = await startControlPlane();
    try {
      await cp.applyCrds();
      await applyAgentIdentity(cp);
      return new AgentTestbed(cp, new Api(cp.adminConfig()), await Origin.start(), await ImageDir.create());
    } catch (e) {
      await cp.stop();
      throw e;
    }
  }

  /** Creates the Node `name`, its base and instances dirs, and its agent's kubeconfig. */
  async node(name: string): Promise<TestNode> {
    await this.admin.createNode(name);
    const dirs = await makeNodeDirs(name);
    const node = { name, dirs, kubeconfig: "" };
    this.nodes.push(node);
    node.kubeconfig = await agentKubeconfig(this.cp, name, dirs.root);
    return node;
  }

  /** Starts an agent for `node` (stopped by `stop()`). */
  launch(node: TestNode, o: LaunchOptions = {}): AgentProcess {
    const agent = startAgent({ node: node.name, dirs: node.dirs, kubeconfigPath: node.kubeconfig, ...o });
    this.agents.push(agent);
    return agent;
  }

  /**
   * Starts the real controller with only its pod-uses part (`--controllers pod-uses`), under its own identity
   * from deploy/, and resolves once it leads: it tells the agents which bases the pods on their node use, and
   * leaves alone the NodeImageCaches the tests write by hand. Stopped by `stop()`, or earlier by the test.
   */
  answerPodUses(): Promise<ControllerProcess> {
    return this.controller(["--controllers", "pod-uses"]);
  }

  /**
   * Starts the real controller with `args` (default: every part, status written at once) under its own identity
   * from deploy/, and resolves once it leads. Stopped by `stop()`, or earlier by the test.
   */
  async controller(args: string[] = ["--status-interval", "0s"]): Promise<ControllerProcess> {
    if (this.controllerIdentity === undefined) {
      await applyObjects(this.cp.adminConfig(), await readManifests([join(repoRoot, "deploy", "10-controller-rbac.yaml")]));
      this.controllerIdentity = (await this.cp.serviceAccountConfig("basecache-system", "basecache-controller")).kubeconfigPath;
    }
    // In its namespace as deployed, where its RBAC lets it hold its Lease (and reads the keys' ConfigMaps).
    const c = startController(this.controllerIdentity, args, { POD_NAMESPACE: "basecache-system" });
    this.controllers.push(c);
    try {
      await c.leading();
    } catch (e) {
      await c.stop();
      throw e;
    }
    return c;
  }

  /** Stops every agent started so far (SIGTERM), and resolves when all have exited. */
  async stopAgents(): Promise<void> {
    await Promise.all(this.agents.splice(0).map((a) => a.stop()));
  }

  /** Runs `fn` in `stop()`, after the agents have stopped and before the dirs go (an unmount, say). */
  onStop(fn: () => Promise<unknown>): void {
    this.cleanups.push(fn);
  }

  /** Stops every agent and controller, then the file's cleanups, the origin and the control plane, and removes the dirs. */
  async stop(): Promise<void> {
    await this.stopAgents();
    await Promise.all(this.controllers.splice(0).map((c) => c.stop()));
    for (const fn of this.cleanups.reverse()) await fn().catch(() => undefined);
    await this.origin.close();
    await this.images.cleanup();
    await this.cp.stop();
    await Promise.all(this.nodes.map((n) => removeNodeDirs(n.dirs)));
  }
}
