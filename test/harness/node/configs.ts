/**
 * The test node's configuration files: containerd (CRI with the walls of these machines worked around),
 * the CNI bridge network, the registry, the kubelet and kube-proxy. Pure text builders; node.ts writes them.
 */
import { join } from "node:path";
import { stringify } from "yaml";
import {
  Bridge,
  BridgeCidr,
  CniNetwork,
  ContainerdSocket,
  Dirs,
  KubeletPort,
  NodeIp,
  NodeName,
  PodRangeEnd,
  PodRangeStart,
  type NodeState,
} from "./layout.js";

// NOTE: no CAP_SYS_RESOURCE here, even for root: without restrict_oom_score_adj every sandbox fails with
// "can't get final child's PID from pipe". cgroup v1 with cgroupfs, as the kubelet is told.
export function containerdConfig(pauseImage: string): string {
  const cri = 'plugins."io.containerd.grpc.v1.cri"';
  return `version = 2
root = "${Dirs.containerdRoot}"
state = "${Dirs.containerdState}"
# Plugins that would write outside our dirs (/opt/containerd) or that we do not use.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "${ContainerdSocket}"
[ttrpc]
  address = "${ContainerdSocket}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""

[${cri}]
  sandbox_image = "${pauseImage}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  [${cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [${cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [${cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "/usr/sbin/runc"
        Root = "${Dirs.runcRoot}"
  [${cri}.cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${Dirs.cniConf}"
    max_conf_num = 1
  [${cri}.registry]
    config_path = "${Dirs.certsD}"
`;
}

/** containerd's hosts.toml for the local registry: plain http on loopback. */
export function registryHostsToml(registry: string): string {
  return `server = "http://${registry}"\n\n[host."http://${registry}"]\n  capabilities = ["pull", "resolve"]\n`;
}

// isGateway false and ipMasq false: the plugin neither turns on ip_forward nor adds NAT rules. The bridge
// address is ours (set before), and the pods' default route points at it, so a packet to a ClusterIP
// reaches the host, where kube-proxy's DNAT turns it into a local delivery: nothing is ever forwarded.
export function cniConflist(): string {
  return JSON.stringify(
    {
      cniVersion: "1.0.0",
      name: CniNetwork,
      plugins: [
        {
          type: "bridge",
          bridge: Bridge,
          isGateway: false,
          ipMasq: false,
          hairpinMode: false,
          ipam: {
            type: "host-local",
            dataDir: Dirs.cniIpam,
            ranges: [[{ subnet: BridgeCidr, rangeStart: PodRangeStart, rangeEnd: PodRangeEnd, gateway: NodeIp }]],
            routes: [{ dst: "0.0.0.0/0", gw: NodeIp }],
          },
        },
      ],
    },
    null,
    2,
  );
}

export function registryConfig(port: number): string {
  return [
    "version: 0.1",
    "log:\n  level: warn\n  accesslog:\n    disabled: true",
    `storage:\n  filesystem:\n    rootdirectory: ${join(Dirs.registry, "data")}\n  delete:\n    enabled: true`,
    `http:\n  addr: 127.0.0.1:${port}\n  secret: basecache-node`,
    "",
  ].join("\n");
}

export function kubeletConfig(state: NodeState, pki: string): string {
  return stringify({
    apiVersion: "kubelet.config.k8s.io/v1beta1",
    kind: "KubeletConfiguration",
    address: NodeIp,
    port: KubeletPort,
    readOnlyPort: 0,
    healthzBindAddress: "127.0.0.1",
    healthzPort: state.ports.kubeletHealthz,
    authentication: { anonymous: { enabled: false }, webhook: { enabled: true }, x509: { clientCAFile: join(pki, "ca.crt") } },
    authorization: { mode: "Webhook" },
    tlsCertFile: join(pki, "kubelet-serving.crt"),
    tlsPrivateKeyFile: join(pki, "kubelet-serving.key"),
    // kubelet 1.35 refuses cgroup v1 unless told; containerd 1.6 cannot tell it the driver, so say it here.
    failCgroupV1: false,
    cgroupDriver: "cgroupfs",
    failSwapOn: false,
    containerRuntimeEndpoint: `unix://${ContainerdSocket}`,
    // No cluster DNS, and pods must never query outside the machine.
    resolvConf: join(Dirs.config, "resolv.conf"),
    clusterDomain: "cluster.local",
    // No CAP_SYS_RESOURCE: the default -999 cannot be set and only makes noise.
    oomScoreAdj: 0,
    serializeImagePulls: false,
    // A shared test machine: other work fills the disk; evict only when it is really full.
    evictionHard: { "memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%", "nodefs.inodesFree": "1%" },
    imageGCHighThresholdPercent: 99,
    imageGCLowThresholdPercent: 98,
    // The kubelet would otherwise not start when these differ from what it wants; `down` puts them back.
    protectKernelDefaults: false,
    shutdownGracePeriod: "0s",
    logging: { format: "text" },
  });
}

export function kubeProxyConfig(state: NodeState, kubeconfig: string): string {
  return stringify({
    apiVersion: "kubeproxy.config.k8s.io/v1alpha1",
    kind: "KubeProxyConfiguration",
    clientConnection: { kubeconfig },
    mode: "iptables",
    hostnameOverride: NodeName,
    bindAddress: "127.0.0.1",
    healthzBindAddress: `127.0.0.1:${state.ports.proxyHealthz}`,
    metricsBindAddress: `127.0.0.1:${state.ports.proxyMetrics}`,
    clusterCIDR: BridgeCidr,
    detectLocalMode: "ClusterCIDR",
    nodePortAddresses: [`${NodeIp}/32`],
    // No route_localnet sysctl (localhost NodePorts), no conntrack sysctls: the host keeps its settings.
    iptables: { localhostNodePorts: false, masqueradeAll: false },
    conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: "0s", tcpCloseWaitTimeout: "0s" },
  });
}
