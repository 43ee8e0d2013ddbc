#!/usr/bin/env node
// Runs the compiled CLI where it was built (the container image runs `npm run build`); in a checkout
// without a build it runs the TypeScript source through tsx, so `npx basecache` works right after `npm ci`.
import { existsSync } from "node:fs";

const compiled = new URL("../dist/src/cli/main.js", import.meta.url);
if (existsSync(compiled)) {
  await import(compiled.href);
} else {
  const { register } = await import("tsx/esm/api");
  register();
  await import(new URL("../src/cli/main.ts", import.meta.url).href);
}
