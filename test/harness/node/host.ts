/**
 * What the test node changes on the host outside its own processes: the bridge, veths, netns, iptables
 * chains, mounts, kubepods cgroups, files outside --root-dir, sysctls. Each has a lister (for `leftovers`)
 * and a remover (for `down`); removers are safe to run when there is nothing to remove.
 */
import { readdir, readFile, rm, rmdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { Bridge, BridgeCidr, CniNetwork, NodeIp, OutsidePaths, Root, RunRoot, ServiceCidr } from "./layout.js";

const run = (cmd: string, args: string[]) => execa(cmd, args, { stdin: "ignore", reject: false, timeout: 30_000 });

export async function ensureBridge(): Promise<void> {
  if ((await run("ip", ["link", "show", Bridge])).exitCode !== 0) {
    const made = await run("ip", ["link", "add", Bridge, "type", "bridge"]);
    if (made.exitCode !== 0) throw new Error(`Cannot create bridge ${Bridge}: ${made.stderr}`);
  }
  const addrs = (await run("ip", ["-o", "-4", "addr", "show", "dev", Bridge])).stdout;
  if (!addrs.includes(`${NodeIp}/24`)) {
    const added = await run("ip", ["addr", "add", `${NodeIp}/24`, "dev", Bridge]);
    if (added.exitCode !== 0) throw new Error(`Cannot add ${NodeIp}/24 to ${Bridge}: ${added.stderr}`);
  }
  const up = await run("ip", ["link", "set", Bridge, "up"]);
  if (up.exitCode !== 0) throw new Error(`Cannot bring ${Bridge} up: ${up.stderr}`);
}

/** Host-side veths on our bridge. */
export async function listVeths(): Promise<string[]> {
  const res = await run("ip", ["-o", "link", "show", "master", Bridge]);
  if (res.exitCode !== 0) return [];
  return res.stdout.split("\n").flatMap((l) => /^\d+: ([^:@]+)/.exec(l)?.[1] ?? []);
}

export async function bridgeExists(): Promise<boolean> {
  return (await run("ip", ["link", "show", Bridge])).exitCode === 0;
}

export async function removeBridge(): Promise<void> {
  for (const v of await listVeths()) await run("ip", ["link", "del", v]);
  if (await bridgeExists()) await run("ip", ["link", "del", Bridge]);
}

// Both back ends: the kubelet and kube-proxy use the nft one here, but a leftover in either is ours to find.
const IptablesTools = ["iptables-nft", "ip6tables-nft", "iptables-legacy", "ip6tables-legacy"];
const Tables = ["filter", "nat", "mangle"];
const OurChain = /^(KUBE-|CNI-)/;

/** `tool table chain` for every KUBE-* and CNI-* chain. */
export async function listChains(): Promise<string[]> {
  const out: string[] = [];
  for (const tool of IptablesTools) {
    for (const table of Tables) {
      const res = await run(tool, ["-w", "5", "-t", table, "-S"]);
      for (const line of res.stdout.split("\n")) {
        const m = /^-N (\S+)/.exec(line);
        if (m && OurChain.test(m[1] as string)) out.push(`${tool} ${table} ${m[1]}`);
      }
    }
  }
  return out;
}

export async function removeChains(): Promise<void> {
  for (const tool of IptablesTools) {
    for (const table of Tables) {
      const rules = (await run(tool, ["-w", "5", "-t", table, "-S"])).stdout.split("\n");
      // Rules in built-in (or any) chains that jump to ours go first, then our chains are flushed and deleted.
      for (const rule of rules) {
        const m = /^-A (\S+) (.*-j (KUBE-|CNI-)\S+.*)$/.exec(rule);
        if (m && !OurChain.test(m[1] as string)) await run("sh", ["-c", `${tool} -w 5 -t ${table} -D ${m[1]} ${m[2]}`]);
      }
      const chains = rules.flatMap((l) => /^-N (\S+)/.exec(l)?.[1] ?? []).filter((c) => OurChain.test(c));
      for (const c of chains) await run(tool, ["-w", "5", "-t", table, "-F", c]);
      for (const c of chains) await run(tool, ["-w", "5", "-t", table, "-X", c]);
    }
  }
  // kube-proxy's nftables tables, should it have made any.
  for (const family of ["ip", "ip6"]) await run("nft", ["delete", "table", family, "kube-proxy"]);
  // Tracked connections to the service range and the bridge: the next node must not inherit their NAT.
  for (const args of [["-d", ServiceCidr], ["-s", BridgeCidr], ["-d", BridgeCidr]]) await run("conntrack", ["-D", ...args]);
}

/** Mount points under our dirs, /run/netns/cni-* and /run/containerd, deepest first. */
export async function listMounts(): Promise<string[]> {
  const info = await readFile("/proc/self/mountinfo", "utf8");
  const prefixes = [Root, RunRoot, OutsidePaths.kubeletDefaultRoot, `${OutsidePaths.netns}/cni-`];
  return info
    .split("\n")
    .map((l) => (l.split(" ")[4] ?? "").replace(/\\040/g, " "))
    .filter((p) => prefixes.some((pre) => p === pre || p.startsWith(pre.endsWith("-") ? pre : `${pre}/`)))
    .sort((a, b) => b.length - a.length);
}

export async function unmountAll(): Promise<void> {
  // A mount can hide another below it; repeat until nothing is left, bounded.
  for (let round = 0; round < 5; round++) {
    const mounts = await listMounts();
    if (mounts.length === 0) return;
    for (const m of mounts) {
      const res = await run("umount", [m]);
      if (res.exitCode !== 0) await run("umount", ["-l", m]);
    }
  }
}

/** Named network namespaces made by the CRI for our pods (cni-*). */
export async function listNetns(): Promise<string[]> {
  const names = await readdir(OutsidePaths.netns).catch(() => [] as string[]);
  return names.filter((n) => n.startsWith("cni-")).map((n) => join(OutsidePaths.netns, n));
}

/** kubepods cgroups in every v1 hierarchy (and the unified one), deepest first. */
export async function listCgroups(): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string) => {
    out.push(dir);
    for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) if (e.isDirectory()) await walk(join(dir, e.name));
  };
  for (const h of await readdir("/sys/fs/cgroup").catch(() => [] as string[])) {
    for (const top of ["kubepods", "kubepods.slice"]) {
      const p = join("/sys/fs/cgroup", h, top);
      if ((await readdir(p).catch(() => undefined)) !== undefined) await walk(p);
    }
  }
  return out.sort((a, b) => b.length - a.length);
}

/** Pids still in kubepods cgroups. */
export async function cgroupPids(): Promise<number[]> {
  const pids = new Set<number>();
  for (const cg of await listCgroups()) {
    const text = await readFile(join(cg, "cgroup.procs"), "utf8").catch(() => "");
    for (const l of text.split("\n")) if (/^\d+$/.test(l)) pids.add(Number(l));
  }
  return [...pids];
}

export async function removeCgroups(): Promise<void> {
  for (const cg of await listCgroups()) await rmdir(cg).catch(() => {});
}

/** Our files outside our dirs: only the names the node makes, so that others' files are never touched. */
export async function listOutsideFiles(hostPaths: string[]): Promise<string[]> {
  const out: string[] = [];
  const has = async (p: string) => (await readdir(p).catch(() => undefined)) !== undefined || (await readFile(p).then(() => true, () => false));
  // Not /run/containerd: with our state dir and runc root our containerd never writes there (seen), and a
  // containerd of the host's own may.
  for (const p of [Root, RunRoot, OutsidePaths.kubeletDefaultRoot, OutsidePaths.podLogs, OutsidePaths.containerLogs, ...hostPaths]) {
    if (await has(p)) out.push(p);
  }
  const cniResults = join(OutsidePaths.cni, "results");
  for (const f of await readdir(cniResults).catch(() => [] as string[])) if (f.startsWith(`${CniNetwork}-`)) out.push(join(cniResults, f));
  const cniNet = join(OutsidePaths.cni, "networks", CniNetwork);
  if (await has(cniNet)) out.push(cniNet);
  return out;
}

export async function removeOutsideFiles(hostPaths: string[]): Promise<void> {
  for (const p of await listOutsideFiles(hostPaths)) await rm(p, { recursive: true, force: true, maxRetries: 3 });
  for (const n of await listNetns()) await rm(n, { force: true });
  // The parents libcni made, only when nothing else is in them.
  for (const d of [join(OutsidePaths.cni, "results"), join(OutsidePaths.cni, "networks"), OutsidePaths.cni]) await rmdir(d).catch(() => {});
}

export async function readSysctls(names: string[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const n of names) {
    const v = await readFile(join("/proc/sys", n), "utf8").catch(() => undefined);
    if (v !== undefined) out[n] = v.trim();
  }
  return out;
}

/** Puts saved sysctls back; resolves the ones that differed. */
export async function restoreSysctls(saved: Record<string, string>): Promise<string[]> {
  const changed: string[] = [];
  for (const [n, v] of Object.entries(saved)) {
    const now = (await readFile(join("/proc/sys", n), "utf8").catch(() => v)).trim();
    if (now === v) continue;
    changed.push(`${n}: ${now} -> ${v}`);
    await writeFile(join("/proc/sys", n), v).catch(() => {});
  }
  return changed;
}

