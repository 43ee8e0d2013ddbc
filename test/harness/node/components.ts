/**
 * Command lines of the node's daemons. The API server and the kubelet listen on the bridge address (pods
 * and the API server must reach them); everything else listens on 127.0.0.1 or not at all.
 */
import { join } from "node:path";
import { etcdArgs } from "../control-plane.js";
import { ApiserverPort, Dirs, NodeIp, NodeName, Root, ServiceCidr, type NodeState } from "./layout.js";
import { Kubeconfigs, Pki } from "./pki.js";

export interface Command {
  name: string;
  bin: string;
  args: string[];
  /** SIGTERM to SIGKILL. */
  graceMs: number;
}

export function etcd(bin: string, state: NodeState): Command {
  const args = etcdArgs(Root, state.ports.etcd, state.ports.etcdPeer);
  return { name: "etcd", bin: join(bin, "etcd"), args, graceMs: 10_000 };
}

export function registry(): Command {
  return { name: "registry", bin: "docker-registry", args: ["serve", join(Dirs.config, "registry.yml")], graceMs: 5_000 };
}

export function containerd(): Command {
  return { name: "containerd", bin: "containerd", args: ["--config", join(Dirs.config, "containerd.toml"), "--log-level", "warn"], graceMs: 10_000 };
}

export function apiserver(bin: string, state: NodeState): Command {
  const args = [
    `--etcd-servers=http://127.0.0.1:${state.ports.etcd}`,
    `--bind-address=${NodeIp}`,
    `--advertise-address=${NodeIp}`,
    `--secure-port=${ApiserverPort}`,
    `--cert-dir=${join(Dirs.pki, "apiserver-generated")}`,
    `--tls-cert-file=${Pki.apiserver.certPath}`,
    `--tls-private-key-file=${Pki.apiserver.keyPath}`,
    `--client-ca-file=${Pki.ca}`,
    `--kubelet-client-certificate=${Pki.apiserverKubeletClient.certPath}`,
    `--kubelet-client-key=${Pki.apiserverKubeletClient.keyPath}`,
    `--kubelet-certificate-authority=${Pki.ca}`,
    // By hostname it would send a DNS query off the machine.
    "--kubelet-preferred-address-types=InternalIP,Hostname",
    "--authorization-mode=Node,RBAC",
    "--enable-admission-plugins=NodeRestriction",
    "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
    `--service-account-key-file=${Pki.sa.publicPath}`,
    `--service-account-signing-key-file=${Pki.sa.privatePath}`,
    `--service-cluster-ip-range=${ServiceCidr}`,
    "--allow-privileged=true",
    "--profiling=false",
    "--v=0",
  ];
  // Stopped, it drains for about a minute: a short grace, then SIGKILL (etcd is stopped after it).
  return { name: "kube-apiserver", bin: join(bin, "kube-apiserver"), args, graceMs: 5_000 };
}

export function controllerManager(bin: string): Command {
  const args = [
    `--kubeconfig=${Kubeconfigs.controllerManager}`,
    "--bind-address=127.0.0.1",
    "--secure-port=0",
    "--leader-elect=false",
    "--use-service-account-credentials=true",
    `--service-account-private-key-file=${Pki.sa.privatePath}`,
    `--root-ca-file=${Pki.ca}`,
    `--cluster-signing-cert-file=${Pki.ca}`,
    `--cluster-signing-key-file=${Pki.caKey}`,
    `--service-cluster-ip-range=${ServiceCidr}`,
    "--allocate-node-cidrs=false",
    "--profiling=false",
    "--v=0",
  ];
  return { name: "kube-controller-manager", bin: join(bin, "kube-controller-manager"), args, graceMs: 5_000 };
}

export function scheduler(bin: string): Command {
  const args = [`--kubeconfig=${Kubeconfigs.scheduler}`, "--bind-address=127.0.0.1", "--secure-port=0", "--leader-elect=false", "--profiling=false", "--v=0"];
  return { name: "kube-scheduler", bin: join(bin, "kube-scheduler"), args, graceMs: 5_000 };
}

export function kubelet(bin: string): Command {
  const args = [
    `--config=${join(Dirs.config, "kubelet.yaml")}`,
    `--kubeconfig=${Kubeconfigs.kubelet}`,
    `--root-dir=${Dirs.kubelet}`,
    `--cert-dir=${join(Dirs.kubelet, "pki")}`,
    `--hostname-override=${NodeName}`,
    `--node-ip=${NodeIp}`,
    "--v=1",
  ];
  return { name: "kubelet", bin: join(bin, "kubelet"), args, graceMs: 10_000 };
}

export function proxy(bin: string): Command {
  return { name: "kube-proxy", bin: join(bin, "kube-proxy"), args: [`--config=${join(Dirs.config, "kube-proxy.yaml")}`, "--v=0"], graceMs: 5_000 };
}
