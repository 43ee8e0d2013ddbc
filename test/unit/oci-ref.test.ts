import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  decideRegistryScheme,
  formatImageReference,
  isLoopbackHost,
  manifestReferenceOf,
  parseImageReference,
  parseRegistryList,
  type ImageReference,
} from "../../src/core/oci-ref.js";

const D = `sha256:${"ab".repeat(32)}`;

function ref(registry: string, repository: string, extra: Partial<ImageReference> = {}, apiHost = registry): ImageReference {
  return { registry, apiHost, repository, ...extra };
}

test("parses references with a registry, tag and digest", () => {
  const table: [string, ImageReference][] = [
    ["registry.local/os/debian:12", ref("registry.local", "os/debian", { tag: "12" })],
    ["registry.local:5000/os/debian", ref("registry.local:5000", "os/debian", { tag: "latest" })],
    ["127.0.0.1:5000/a/b/c:v1.2_3-x", ref("127.0.0.1:5000", "a/b/c", { tag: "v1.2_3-x" })],
    [`localhost/disk@${D}`, ref("localhost", "disk", { digest: D })],
    [`localhost:5000/disk:v1@${D}`, ref("localhost:5000", "disk", { tag: "v1", digest: D })],
    ["[::1]:5000/disk:v1", ref("[::1]:5000", "disk", { tag: "v1" })],
    ["[::1]/disk", ref("[::1]", "disk", { tag: "latest" })],
    ["quay.io/kubevirt/fedora-cloud-container-disk-demo:v1.1.0", ref("quay.io", "kubevirt/fedora-cloud-container-disk-demo", { tag: "v1.1.0" })],
    ["debian:12", ref("docker.io", "library/debian", { tag: "12" }, "registry-1.docker.io")],
    ["user/app", ref("docker.io", "user/app", { tag: "latest" }, "registry-1.docker.io")],
    ["docker.io/library/debian", ref("docker.io", "library/debian", { tag: "latest" }, "registry-1.docker.io")],
    ["a.b/x__y/z--w.v:TAG", ref("a.b", "x__y/z--w.v", { tag: "TAG" })],
  ];
  for (const [input, want] of table) assert.deepEqual(parseImageReference(input), want, input);
});

test("refuses malformed references with a RangeError that names the problem", () => {
  const table: [string, RegExp][] = [
    ["", /length/],
    ["registry.local/Os/debian", /repository component "Os"/],
    ["registry.local/os//debian", /repository component ""/],
    ["registry.local/os/debian:", /tag ""/],
    ["registry.local/os/debian:-bad", /tag "-bad"/],
    [`registry.local/os/debian:${"t".repeat(129)}`, /tag/],
    ["registry.local/os/debian@sha256:abc", /digest/],
    [`registry.local/os/debian@sha512:${"ab".repeat(64)}`, /digest/],
    [`registry.local/os/debian@SHA256:${"AB".repeat(32)}`, /digest/],
    ["registry.local:99999/os", /registry host/],
    ["bad_host.local:5000/os", /registry host/],
    ["registry.local/os debian", /whitespace/],
    ["registry.local/os/../x", /repository component/],
    ["a.b/z-_-w:v", /repository component "z-_-w"/],
    ["registry.local/", /repository/],
    [`r.local/${"a".repeat(256)}`, /repository must be/],
  ];
  for (const [input, message] of table) {
    assert.throws(() => parseImageReference(input), (err: unknown) => err instanceof RangeError && message.test(err.message), input);
  }
});

test("fetches the manifest by digest when pinned, else by tag", () => {
  assert.equal(manifestReferenceOf(parseImageReference(`r.local/x:v1@${D}`)), D);
  assert.equal(manifestReferenceOf(parseImageReference("r.local/x:v1")), "v1");
  assert.equal(manifestReferenceOf(parseImageReference("r.local/x")), "latest");
});

test("formats a parsed reference back to its canonical form", () => {
  assert.equal(formatImageReference(parseImageReference(`r.local:5/x/y:v@${D}`)), `r.local:5/x/y:v@${D}`);
  assert.equal(formatImageReference(parseImageReference("debian")), "docker.io/library/debian:latest");
});

test("recognises loopback hosts", () => {
  const table: [string, boolean][] = [
    ["localhost", true],
    ["localhost:5000", true],
    ["registry.localhost:80", true],
    ["127.0.0.1:5000", true],
    ["127.3.4.5", true],
    ["[::1]:5000", true],
    ["[::1]", true],
    ["128.0.0.1", false],
    ["localhost.example.com", false],
    ["127.0.0.1.nip.io", false],
    ["registry.local:5000", false],
    ["[::2]:5000", false],
  ];
  for (const [host, want] of table) assert.equal(isLoopbackHost(host), want, host);
});

test("speaks http only to loopback and listed insecure registries", () => {
  const insecure = parseRegistryList(" Registry.Lan:5000 , mirror.lan,, ");
  assert.deepEqual(insecure, ["registry.lan:5000", "mirror.lan"]);
  const table: [string, "http" | "https"][] = [
    ["127.0.0.1:41234", "http"],
    ["localhost", "http"],
    ["registry.lan:5000", "http"],
    ["REGISTRY.LAN:5000", "http"],
    ["registry.lan:5001", "https"],
    ["registry.lan", "https"],
    ["mirror.lan", "http"],
    ["mirror.lan:8443", "http"],
    ["quay.io", "https"],
    ["registry-1.docker.io", "https"],
  ];
  for (const [host, want] of table) assert.equal(decideRegistryScheme(host, insecure), want, host);
  assert.deepEqual(parseRegistryList(undefined), []);
});

test("every well-formed reference parses and formats back to itself", () => {
  const alnum = fc.stringMatching(/^[a-z0-9]{1,8}$/);
  const component = fc.tuple(alnum, fc.array(fc.tuple(fc.constantFrom(".", "_", "__", "-", "--"), alnum), { maxLength: 2 })).map(([head, rest]) => head + rest.map(([s, a]) => s + a).join(""));
  const host = fc.tuple(fc.array(alnum, { minLength: 1, maxLength: 3 }), fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined })).map(([labels, port]) => `${labels.join(".")}.test${port !== undefined ? `:${port}` : ""}`);
  const tag = fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}$/);
  const digest = fc.stringMatching(/^[0-9a-f]{64}$/).map((h) => `sha256:${h}`);
  fc.assert(
    fc.property(host, fc.array(component, { minLength: 1, maxLength: 4 }), fc.option(tag, { nil: undefined }), fc.option(digest, { nil: undefined }), (h, parts, t, d) => {
      const written = `${h}/${parts.join("/")}${t !== undefined ? `:${t}` : ""}${d !== undefined ? `@${d}` : ""}`;
      const parsed = parseImageReference(written);
      assert.equal(parsed.registry, h);
      assert.equal(parsed.repository, parts.join("/"));
      const canonical = t === undefined && d === undefined ? `${written}:latest` : written;
      assert.equal(formatImageReference(parsed), canonical);
    }),
    { numRuns: 300 },
  );
});
