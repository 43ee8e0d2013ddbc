/**
 * Where the test node lives: its fixed names and addresses, its own directories, the places outside them
 * that the kubelet, libcni and the CRI write to anyway, and the state file that lets `down` and
 * `status` (possibly in another process) find what `up` started.
 */
import { readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";

export const NodeName = "basecache-node";
/** A bridge whose addresses exist only on this machine: no masquerade, no forwarding, no gateway out. */
export const Bridge = "bcnode0";
export const BridgeCidr = "10.234.0.0/24";
export const NodeIp = "10.234.0.1";
export const PodRangeStart = "10.234.0.10";
export const PodRangeEnd = "10.234.0.250";
export const ServiceCidr = "10.96.0.0/24";
/** The `kubernetes` Service's ClusterIP: the first address of the service range. */
export const KubernetesServiceIp = "10.96.0.1";
export const ApiserverPort = 6443;
export const KubeletPort = 10250;
export const CniNetwork = "basecache-node";

/** Everything of the node that is ours alone: data, certificates, configs, logs. */
export const Root = "/var/lib/basecache-node";
/** Runtime state: sockets, containerd's and runc's state. */
export const RunRoot = "/run/basecache-node";
export const StatePath = join(Root, "state.json");

export const Dirs = {
  pki: join(Root, "pki"),
  logs: join(Root, "logs"),
  etcd: join(Root, "etcd"),
  registry: join(Root, "registry"),
  containerdRoot: join(Root, "containerd"),
  containerdState: join(RunRoot, "containerd"),
  runcRoot: join(RunRoot, "runc"),
  certsD: join(Root, "certs.d"),
  cniConf: join(Root, "cni/net.d"),
  cniIpam: join(Root, "cni/ipam"),
  kubelet: join(Root, "kubelet"),
  config: join(Root, "config"),
};

export const ContainerdSocket = join(Dirs.containerdState, "containerd.sock");

/**
 * Paths outside our own dirs that the node writes to (the kubelet ignores --root-dir for some, libcni and
 * the shims have their own defaults). `down` removes them; `leftovers` reports them.
 */
export const OutsidePaths = {
  kubeletDefaultRoot: "/var/lib/kubelet",
  devicePlugins: "/var/lib/kubelet/device-plugins",
  podLogs: "/var/log/pods",
  containerLogs: "/var/log/containers",
  cni: "/var/lib/cni",
  netns: "/run/netns",
};

/** The host's default hostPath dirs of deploy/ and the chart, removed on `down` unless told otherwise. */
export const DefaultHostPaths = ["/var/lib/basecache"];

/** Kernel settings the kubelet or kube-proxy may change; saved at `up` and put back at `down`. */
export const TouchedSysctls = [
  "vm/overcommit_memory",
  "vm/panic_on_oom",
  "kernel/panic",
  "kernel/panic_on_oops",
  "kernel/keys/root_maxkeys",
  "kernel/keys/root_maxbytes",
  "net/ipv4/conf/all/route_localnet",
  "net/netfilter/nf_conntrack_max",
  "net/ipv4/ip_forward",
];

export interface DaemonRecord {
  name: string;
  pid: number;
  /** Field 22 of /proc/PID/stat at start: tells our process from a later one with a reused pid. */
  startTime: string;
  log: string;
}

export interface NodeState {
  daemons: DaemonRecord[];
  ports: { etcd: number; etcdPeer: number; registry: number; kubeletHealthz: number; proxyHealthz: number; proxyMetrics: number };
  /** `127.0.0.1:PORT`. */
  registry: string;
  pauseImage: string;
  /** Pushed images: name (repo:tag) -> full reference. */
  images: Record<string, string>;
  hostPaths: string[];
  /** The pinned binaries the daemons run (kubectl included). */
  binDir: string;
  sysctls: Record<string, string>;
  startedAt: string;
}

export async function readState(): Promise<NodeState | undefined> {
  try {
    return JSON.parse(await readFile(StatePath, "utf8")) as NodeState;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new Error(`Cannot read the test node's state ${StatePath}: ${(err as Error).message}`);
  }
}

export async function writeState(state: NodeState): Promise<void> {
  const tmp = `${StatePath}.tmp`;
  await writeFile(tmp, JSON.stringify(state, null, 2));
  await rename(tmp, StatePath);
}
