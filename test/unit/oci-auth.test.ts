import { test } from "node:test";
import assert from "node:assert/strict";
import {
  basicAuthorization,
  findDockerConfigCredentials,
  parseAuthChallenge,
  planTokenRequest,
  pullScope,
  parseTokenResponse,
} from "../../src/core/oci-auth.js";

test("parses WWW-Authenticate challenges", () => {
  const table: [string | undefined, ReturnType<typeof parseAuthChallenge>][] = [
    [
      'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/debian:pull"',
      { scheme: "bearer", params: { realm: "https://auth.docker.io/token", service: "registry.docker.io", scope: "repository:library/debian:pull" } },
    ],
    ['Basic realm="Registry Realm"', { scheme: "basic", params: { realm: "Registry Realm" } }],
    ["bearer Realm=https://t.local/token, Service=reg", { scheme: "bearer", params: { realm: "https://t.local/token", service: "reg" } }],
    ['Bearer realm="a\\"b",realm="second"', { scheme: "bearer", params: { realm: 'a"b' } }],
    ['Bearer realm="x",scope="repository:a/b:pull,push"', { scheme: "bearer", params: { realm: "x", scope: "repository:a/b:pull,push" } }],
    ["Negotiate", { scheme: "negotiate", params: {} }],
    ["", undefined],
    [undefined, undefined],
    ["=bad", undefined],
  ];
  for (const [header, want] of table) assert.deepEqual(parseAuthChallenge(header), want, String(header));
});

test("plans the token request from the challenge, with our pull scope when it names none", () => {
  const c = (params: Record<string, string>) => ({ scheme: "bearer", params });
  const ok = planTokenRequest(c({ realm: "https://auth.example/token?x=1", service: "reg" }), "os/debian", "https");
  assert.deepEqual(ok, { ok: true, url: "https://auth.example/token?x=1&service=reg&scope=repository%3Aos%2Fdebian%3Apull" });
  const scoped = planTokenRequest(c({ realm: "https://a/t", scope: "repository:x:pull" }), "os/debian", "https");
  assert.ok(scoped.ok && new URL(scoped.url).searchParams.get("scope") === "repository:x:pull");
  assert.ok(planTokenRequest(c({ realm: "http://127.0.0.1:1/token" }), "x", "http").ok, "plain http realm for a plain http registry");
  const table: [Record<string, string>, "http" | "https", RegExp][] = [
    [{}, "https", /no realm/],
    [{ realm: "not a url" }, "https", /not a URL/],
    [{ realm: "http://auth.example/token" }, "https", /not https/],
    [{ realm: "file:///etc/passwd" }, "http", /not https/],
  ];
  for (const [params, scheme, message] of table) {
    const p = planTokenRequest(c(params), "x", scheme);
    assert.ok(!p.ok && message.test(p.message), JSON.stringify(params));
  }
  assert.equal(pullScope("a/b"), "repository:a/b:pull");
});

test("reads the token from a token server's answer", () => {
  assert.equal(parseTokenResponse('{"token":"abc","access_token":"def"}'), "abc");
  assert.equal(parseTokenResponse('{"access_token":"def"}'), "def");
  assert.equal(parseTokenResponse('{"token":""}'), undefined);
  assert.equal(parseTokenResponse('{"token":"a\\r\\nX-Evil: 1"}'), undefined, "no header injection");
  assert.equal(parseTokenResponse("null"), undefined);
  assert.equal(parseTokenResponse("<html>"), undefined);
});

const b64 = (s: string) => Buffer.from(s).toString("base64");

test("finds basic credentials in a Docker config file", () => {
  const config = JSON.stringify({
    auths: {
      "registry.lan:5000": { auth: b64("alice:s3cr:et") },
      "registry.lan": { auth: b64("bob:pw") },
      "https://index.docker.io/v1/": { auth: b64("hub:hubpw") },
      "quay.io": { username: "q", password: "qpw" },
      "broken.lan": { auth: b64("nocolon") },
      "token.lan": { identitytoken: "x" },
    },
  });
  const table: [string, { username: string; password: string } | undefined][] = [
    ["registry.lan:5000", { username: "alice", password: "s3cr:et" }],
    ["registry.lan:6000", { username: "bob", password: "pw" }],
    ["REGISTRY.LAN", { username: "bob", password: "pw" }],
    ["docker.io", { username: "hub", password: "hubpw" }],
    ["quay.io", { username: "q", password: "qpw" }],
    ["broken.lan", undefined],
    ["token.lan", undefined],
    ["other.lan", undefined],
  ];
  for (const [registry, want] of table) assert.deepEqual(findDockerConfigCredentials(config, registry), want, registry);
  assert.equal(findDockerConfigCredentials("{not json", "x"), undefined);
  assert.equal(findDockerConfigCredentials('{"credsStore":"desktop"}', "x"), undefined);
});

test("builds a Basic authorization header", () => {
  assert.equal(basicAuthorization({ username: "Aladdin", password: "open sesame" }), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
});
