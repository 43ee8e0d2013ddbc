/**
 * The test node by hand: `node --import tsx test/harness/node/cli.ts up|down|status|leftovers`.
 */
import { down, leftovers, status, unavailableReason, up } from "./node.js";
import { ensurePauseImage } from "./pause-image.js";

const Help = `Usage: node --import tsx test/harness/node/cli.ts <command> [--image ARCHIVE=REPO:TAG ...]

A real one-node Kubernetes on this machine (root only): etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kubelet, kube-proxy (v1.35.4, built by hack/build-tools.sh node), Debian's containerd and a
docker-registry on 127.0.0.1. Pods live on bridge bcnode0 (10.234.0.0/24), which reaches nothing outside.

Commands:
  up          start the node (or find it up); prints the admin kubeconfig path and the registry.
              --image pushes an OCI archive into the node's registry (repeatable).
  down        stop it and remove everything it made; safe to repeat.
  status      say whether it is up, with each daemon's pid.
  leftovers   list what a node left on the host (processes, mounts, netns, veths, chains, cgroups, files).
  pause-image build (or find cached) the pause image and print its archive.
`;

function images(args: string[]): { archive: string; name: string }[] {
  const out = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] !== "--image") throw new Error(`Unknown argument "${args[i] ?? ""}"; see --help`);
    const [archive, name] = (args[++i] ?? "").split("=");
    if (!archive || !name) throw new Error('--image needs ARCHIVE=REPO:TAG, e.g. --image /tmp/agent.tar=basecache/agent:dev');
    out.push({ archive, name });
  }
  return out;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const log = (line: string) => process.stderr.write(`node: ${line}\n`);
  switch (command) {
    case "up": {
      const started = performance.now();
      const node = await up({ images: images(rest), log });
      console.log(`up in ${Math.round(performance.now() - started)} ms`);
      console.log(`export KUBECONFIG=${node.kubeconfigPath}`);
      console.log(`registry ${node.registry}; pause ${node.pauseImage}`);
      for (const [name, ref] of Object.entries(node.images)) console.log(`image ${name} -> ${ref}`);
      return 0;
    }
    case "down": {
      const { ms } = await down(log);
      const left = await leftovers();
      console.log(`down in ${ms} ms${left.length ? `; left: ${left.join(", ")}` : ""}`);
      return left.length ? 1 : 0;
    }
    case "status": {
      const why = await unavailableReason();
      if (why) console.log(`unavailable: ${why}`);
      const s = await status();
      console.log(s.up ? `up: ${s.node?.server ?? ""}, KUBECONFIG=${s.node?.kubeconfigPath ?? ""}, registry ${s.node?.registry ?? ""}` : "not up");
      for (const d of s.daemons) console.log(`  ${d.name} pid ${d.pid} ${d.alive ? "running" : "gone"}`);
      return s.up ? 0 : 3;
    }
    case "leftovers": {
      const left = await leftovers();
      for (const l of left) console.log(l);
      return left.length ? 1 : 0;
    }
    case "pause-image":
      console.log(JSON.stringify(await ensurePauseImage(log)));
      return 0;
    case "--help":
    case "-h":
    case undefined:
      process.stdout.write(Help);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`Unknown command "${command}"\n${Help}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
