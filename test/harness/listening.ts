/**
 * Where a child process serves HTTP, found from the kernel's socket table rather than from its log: the TCP
 * sockets in LISTEN state (/proc/net/tcp and tcp6) whose inodes the process holds open (/proc/PID/fd). A process
 * given port 0, or one that fell back from a taken default port, is found the same way.
 */
import { readdir, readFile, readlink } from "node:fs/promises";
import { eventually } from "./eventually.js";

const Listen = "0A";

/** The TCP ports process `pid` listens on, on any address; empty when it has none or has exited. */
export async function listeningPorts(pid: number): Promise<number[]> {
  const inodes = new Set<string>();
  const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
  for (const fd of fds) {
    const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => "");
    const m = /^socket:\[(\d+)\]$/.exec(target);
    if (m) inodes.add(m[1]!);
  }
  const ports = new Set<number>();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    const text = await readFile(table, "utf8").catch(() => "");
    for (const line of text.split("\n").slice(1)) {
      // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== Listen || !inodes.has(f[9]!)) continue;
      ports.add(parseInt(f[1]!.split(":")[1]!, 16));
    }
  }
  return [...ports].sort((a, b) => a - b);
}

/**
 * The loopback address (127.0.0.1:PORT) on which process `pid` answers `path` with anything but 404, waiting
 * until it listens. An endpoint bound to every interface answers on loopback too.
 */
export async function servingAddress(pid: number, path: string, timeoutMs = 60_000): Promise<string> {
  return eventually(
    async () => {
      const ports = await listeningPorts(pid);
      for (const port of ports) {
        const res = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(5_000) }).catch(() => undefined);
        await res?.body?.cancel();
        if (res && res.status !== 404) return `127.0.0.1:${port}`;
      }
      throw new Error(`Process ${pid} serves ${path} on none of its listening ports [${ports.join(", ")}] yet`);
    },
    { timeoutMs, intervalMs: 100, description: `process ${pid} serving ${path}` },
  );
}
