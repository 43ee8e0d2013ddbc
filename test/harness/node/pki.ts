/**
 * The test node's certificates and kubeconfigs: one CA; the API server's serving certificate for the bridge
 * address and the `kubernetes` Service; the kubelet's; a client certificate per component, named as the
 * default RBAC bindings and the Node authorizer expect.
 */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createCertAuthority, createServiceAccountKeys, fileBase64, type KeyPair } from "../certs.js";
import { kubeconfigYaml } from "../control-plane.js";
import { ApiserverPort, Dirs, KubernetesServiceIp, NodeIp, NodeName } from "./layout.js";

export const Server = `https://${NodeIp}:${ApiserverPort}`;

export const Kubeconfigs = {
  admin: join(Dirs.pki, "admin.kubeconfig"),
  kubelet: join(Dirs.pki, "kubelet.kubeconfig"),
  controllerManager: join(Dirs.pki, "kube-controller-manager.kubeconfig"),
  scheduler: join(Dirs.pki, "kube-scheduler.kubeconfig"),
  proxy: join(Dirs.pki, "kube-proxy.kubeconfig"),
};

export const Pki = {
  ca: join(Dirs.pki, "ca.crt"),
  caKey: join(Dirs.pki, "ca.key"),
  apiserver: { certPath: join(Dirs.pki, "apiserver.crt"), keyPath: join(Dirs.pki, "apiserver.key") },
  apiserverKubeletClient: { certPath: join(Dirs.pki, "apiserver-kubelet-client.crt"), keyPath: join(Dirs.pki, "apiserver-kubelet-client.key") },
  sa: { privatePath: join(Dirs.pki, "sa.key"), publicPath: join(Dirs.pki, "sa.pub") },
};

async function writeKubeconfig(path: string, pair: KeyPair): Promise<void> {
  const user = { "client-certificate-data": await fileBase64(pair.certPath), "client-key-data": await fileBase64(pair.keyPath) };
  await writeFile(path, kubeconfigYaml(Server, await fileBase64(Pki.ca), user), { mode: 0o600 });
}

/** Writes every certificate, key and kubeconfig into Dirs.pki (which must exist and be empty). */
export async function createNodePki(): Promise<void> {
  const ca = await createCertAuthority(Dirs.pki);
  const apiserverNames = [
    `IP:${NodeIp}`,
    `IP:${KubernetesServiceIp}`,
    "IP:127.0.0.1",
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local",
    "DNS:localhost",
  ];
  await ca.issueServingCert("apiserver", apiserverNames);
  await ca.issueServingCert("kubelet-serving", [`IP:${NodeIp}`, `DNS:${NodeName}`]);
  await createServiceAccountKeys(Dirs.pki);
  await ca.issueClientCert("apiserver-kubelet-client", "kube-apiserver-kubelet-client", ["system:masters"]);
  const clients: [string, string, string, string[]][] = [
    [Kubeconfigs.admin, "admin", "basecache-admin", ["system:masters"]],
    [Kubeconfigs.kubelet, "kubelet", `system:node:${NodeName}`, ["system:nodes"]],
    [Kubeconfigs.controllerManager, "kube-controller-manager", "system:kube-controller-manager", []],
    [Kubeconfigs.scheduler, "kube-scheduler", "system:kube-scheduler", []],
    [Kubeconfigs.proxy, "kube-proxy", "system:kube-proxy", []],
  ];
  for (const [path, name, user, groups] of clients) await writeKubeconfig(path, await ca.issueClientCert(name, user, groups));
}
