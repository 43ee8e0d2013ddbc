/**
 * The test bed of the agent's integration tests, one per test file: a real control plane with the CRDs and the
 * agent's identity from deploy/, an admin client, an HTTP origin and a directory of test images. Nodes are made
 * through it (the Node object, the node's dirs, a kubeconfig bound to the node) and agents started through it,
 * so that `stop()` ends every agent, runs the file's own cleanups (an unmount) and removes every dir it made.
 */
import { startControlPlane, type ControlPlane } from "./control-plane.js";
import { agentKubeconfig, applyAgentIdentity, makeNodeDirs, removeNodeDirs, startAgent, type AgentProcess, type NodeDirs } from "./agent-process.js";
import { ImageDir } from "./images.js";
import { Api } from "./kube-api.js";
import { Origin } from "./origin.js";

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

  /** Stops every agent started so far (SIGTERM), and resolves when all have exited. */
  async stopAgents(): Promise<void> {
    await Promise.all(this.agents.splice(0).map((a) => a.stop()));
  }

  /** Runs `fn` in `stop()`, after the agents have stopped and before the dirs go (an unmount, say). */
  onStop(fn: () => Promise<unknown>): void {
    this.cleanups.push(fn);
  }

  /** Stops every agent, then the file's cleanups, the origin and the control plane, and removes the dirs. */
  async stop(): Promise<void> {
    await this.stopAgents();
    for (const fn of this.cleanups.reverse()) await fn().catch(() => undefined);
    await this.origin.close();
    await this.images.cleanup();
    await this.cp.stop();
    await Promise.all(this.nodes.map((n) => removeNodeDirs(n.dirs)));
  }
}
