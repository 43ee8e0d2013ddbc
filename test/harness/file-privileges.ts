/**
 * A static check of the short shell scripts that init containers run on hostPath directories: which steps
 * the kernel would refuse given the container's user and capabilities. The point is the state a restart
 * finds, not the first run: a directory an earlier run handed to another user is owned by that user, so a
 * step that needs ownership (chmod without CAP_FOWNER) must come after the script has taken it back.
 */
import type { V1Container, V1PodSecurityContext } from "@kubernetes/client-node";

/** What the container runtime grants a root container when the pod spec neither adds nor drops any. */
const RuntimeDefaultCapabilities = [
  "AUDIT_WRITE",
  "CHOWN",
  "DAC_OVERRIDE",
  "FOWNER",
  "FSETID",
  "KILL",
  "MKNOD",
  "NET_BIND_SERVICE",
  "NET_RAW",
  "SETFCAP",
  "SETGID",
  "SETPCAP",
  "SETUID",
  "SYS_CHROOT",
];

export interface ScriptUser {
  uid: number;
  /** Effective capabilities, without the `CAP_` prefix. */
  capabilities: string[];
}

/** The uid and effective capabilities a container's processes get. Non-root processes keep none (no ambient). */
export function containerUser(c: V1Container, pod: V1PodSecurityContext | undefined): ScriptUser {
  const uid = c.securityContext?.runAsUser ?? pod?.runAsUser ?? 0;
  if (uid !== 0) return { uid, capabilities: [] };
  const caps = c.securityContext?.capabilities;
  const drop = caps?.drop ?? [];
  const base = drop.includes("ALL") ? [] : RuntimeDefaultCapabilities.filter((x) => !drop.includes(x));
  return { uid, capabilities: [...new Set([...base, ...(caps?.add ?? [])])] };
}

/** The shell text a `sh -c` container runs, or undefined for any other form. */
export function shellScript(c: V1Container): string | undefined {
  const argv = [...(c.command ?? []), ...(c.args ?? [])];
  if (argv.length === 3 && /(^|\/)(ba)?sh$/.test(argv[0] ?? "") && argv[1] === "-c") return argv[2];
  return undefined;
}

function parseOwner(spec: string): number | undefined {
  const uid = spec.split(":")[0] ?? "";
  return /^\d+$/.test(uid) ? Number(uid) : undefined;
}

/**
 * Every step of `script` (an `&&` chain of chown, chmod and mkdir) that `who` could not do when each path
 * may already belong to anyone, e.g. to the user an earlier run handed it to. Returns one line per refusal,
 * naming the step and the reason; a step the model does not know is reported too, so that it stays exact.
 */
export function refusedSteps(script: string, who: ScriptUser): string[] {
  const has = (cap: string) => who.capabilities.includes(cap);
  // Known owners only; a path not in the map may be owned by anyone.
  const owner = new Map<string, number>();
  const problems: string[] = [];
  if (/[;|`$<>]|\|\|/.test(script)) return [`cannot judge "${script}": only a plain && chain of chown, chmod and mkdir is modelled`];
  for (const step of script.split("&&").map((s) => s.trim())) {
    const [cmd, ...args] = step.split(/\s+/);
    const paths = args.filter((a) => !a.startsWith("-"));
    if (cmd === "chown") {
      const [spec = "", ...targets] = paths;
      const uid = parseOwner(spec);
      if (uid === undefined) problems.push(`"${step}": the owner must be numeric`);
      for (const p of targets) {
        const own = owner.get(p);
        // chown to another uid needs CAP_CHOWN even for root; a no-op chown by the owner does not.
        if (!has("CHOWN") && !(own === who.uid && uid === who.uid)) problems.push(`"${step}": changing the owner of ${p} needs CAP_CHOWN`);
        else if (uid !== undefined) owner.set(p, uid);
      }
    } else if (cmd === "chmod") {
      for (const p of paths.slice(1)) {
        const own = owner.get(p);
        if (own !== who.uid && !has("FOWNER")) {
          const whose = own === undefined ? "may belong to another user (e.g. after an earlier run)" : `belongs to uid ${own}`;
          problems.push(`"${step}": ${p} ${whose}, and chmod by uid ${who.uid} without CAP_FOWNER is refused`);
        }
      }
    } else if (cmd === "mkdir") {
      // -p on an existing directory changes nothing, so its owner stays unknown.
      if (!args.includes("-p")) for (const p of paths) owner.set(p, who.uid);
    } else {
      problems.push(`cannot judge "${step}": only chown, chmod and mkdir are modelled`);
    }
  }
  return problems;
}
