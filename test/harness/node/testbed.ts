/**
 * What every test of deploy/ on the real node starts from: a fresh node with the agent image in its registry,
 * an origin on the bridge address (the only host address pods reach), an image dir, and the user's
 * kustomization of deploy/. `stop` takes it all down and checks that the node left nothing behind.
 */
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ImageDir } from "../images.js";
import { Origin } from "../origin.js";
import { ensureAgentImage } from "./images.js";
import { NodeIp } from "./layout.js";
import { down, leftovers, up, type TestNode } from "./node.js";
import { waitInstalled, writeKustomization } from "./workloads.js";

export const repoRoot = resolve(fileURLToPath(new URL("../../..", import.meta.url)));
/** The name the agent image is pushed under; the kustomization points deploy/ at the registry's copy. */
const AgentImageName = "basecache/basecache:test";

export interface NodeTestbed {
  node: TestNode;
  origin: Origin;
  images: ImageDir;
  /** The user's kustomization dir: deploy/ as its base, the image pointed at the local registry. */
  dir: string;
}

/** A fresh node (anything left by an earlier run goes first) with the agent image pushed to its registry. */
export async function startNodeTestbed(): Promise<NodeTestbed> {
  await down();
  const image = await ensureAgentImage();
  const node = await up({ images: [{ archive: image.archive, name: AgentImageName }] });
  const origin = await Origin.start(NodeIp);
  const images = await ImageDir.create();
  const dir = await writeKustomization(join(repoRoot, "deploy"), node.images[AgentImageName] ?? "");
  return { node, origin, images, dir };
}

/** Applies crds/ and the kustomization (after `tweak`, if given), and waits for the agent and controller. */
export async function installDeploy(tb: NodeTestbed, tweak?: () => Promise<void>): Promise<void> {
  await tb.node.kubectl(["apply", "-f", join(repoRoot, "crds")]);
  await tb.node.kubectl(["wait", "--for=condition=Established", "--timeout=60s", "crd/imagecaches.basecache.io", "crd/nodeimagecaches.basecache.io"]);
  await tb.node.kubectl(["apply", "-k", tb.dir]);
  await tweak?.();
  await waitInstalled(tb.node);
}

/** Takes the node down and everything the test bed made; fails when the node left anything behind. */
export async function stopNodeTestbed(tb: Partial<NodeTestbed> | undefined): Promise<void> {
  await down();
  await tb?.origin?.close();
  await tb?.images?.cleanup();
  if (tb?.dir) await rm(tb.dir, { recursive: true, force: true });
  assert.deepEqual(await leftovers(), []);
}
