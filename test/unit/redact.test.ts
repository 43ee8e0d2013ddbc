import { test } from "node:test";
import assert from "node:assert/strict";
import { isSecretParam, redactUrl, redactUrlsIn } from "../../src/core/redact.js";

test("redactUrl strips userinfo and secret query values, keeping everything else as written", () => {
  const table: [string, string, string][] = [
    ["plain URL", "https://images.example/os/debian-12.qcow2", "https://images.example/os/debian-12.qcow2"],
    ["user and password", "https://alice:s3cret@images.example/a.img", "https://images.example/a.img"],
    ["user only", "http://alice@127.0.0.1:8080/a.img", "http://127.0.0.1:8080/a.img"],
    ["encoded password", "https://alice:p%40ss%3Aw@h.example/a", "https://h.example/a"],
    [
      "S3 pre-signed",
      "https://b.s3.amazonaws.com/k.img?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F20261202&X-Amz-Date=20261202T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Security-Token=FQoG&X-Amz-Signature=abcdef",
      "https://b.s3.amazonaws.com/k.img?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=REDACTED&X-Amz-Date=20261202T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Security-Token=REDACTED&X-Amz-Signature=REDACTED",
    ],
    [
      "GCS signed",
      "https://storage.googleapis.com/b/o?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=sa%40p.iam&X-Goog-Signature=0f0f",
      "https://storage.googleapis.com/b/o?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=REDACTED&X-Goog-Signature=REDACTED",
    ],
    ["Azure SAS", "https://a.blob.core.windows.net/c/d.vhd?sv=2022-11-02&se=2026-12-03&sp=r&sig=AbC%2B%3D", "https://a.blob.core.windows.net/c/d.vhd?sv=2022-11-02&se=2026-12-03&sp=r&sig=REDACTED"],
    ["token and api key", "https://h/a?token=t1&api_key=k1&apikey=k2&access_token=t2&page=2", "https://h/a?token=REDACTED&api_key=REDACTED&apikey=REDACTED&access_token=REDACTED&page=2"],
    ["names matched by pattern, any case", "https://h/a?Upload-Token=x&db_password=y&My-Signature=z&CLIENT_SECRET=w", "https://h/a?Upload-Token=REDACTED&db_password=REDACTED&My-Signature=REDACTED&CLIENT_SECRET=REDACTED"],
    ["an encoded secret name", "https://h/a?%74oken=x", "https://h/a?%74oken=REDACTED"],
    ["a flag without a value stays", "https://h/a?token&x=1", "https://h/a?token&x=1"],
    ["a token in the fragment", "https://h/cb#access_token=abc&state=1", "https://h/cb#access_token=REDACTED&state=1"],
    ["userinfo and signature together", "https://u:p@h/a?sig=1", "https://h/a?sig=REDACTED"],
    ["not a URL: userinfo-looking part removed", "//u:p@h/a", "//h/a"],
    ["not a URL at all", "not a url", "not a url"],
  ];
  for (const [label, input, want] of table) assert.equal(redactUrl(input), want, label);
});

test("what redactUrl returns holds no secret it was given, and redacting twice changes nothing", () => {
  const secrets = ["s3cret", "abcdef", "FQoG", "t1", "k1"];
  const urls = [
    "https://alice:s3cret@h/a?X-Amz-Signature=abcdef&X-Amz-Security-Token=FQoG",
    "https://h/a?token=t1&key=k1",
  ];
  for (const u of urls) {
    const once = redactUrl(u);
    for (const s of secrets) assert.ok(!once.includes(s), `${once} holds ${s}`);
    assert.equal(redactUrl(once), once);
  }
});

test("parameters that name no secret are not taken for one", () => {
  for (const name of ["page", "version", "X-Amz-Date", "X-Amz-Expires", "sv", "se", "sp", "format", "arch"]) assert.equal(isSecretParam(name), false, name);
  for (const name of ["sig", "Signature", "token", "KEY", "password", "X-Amz-Credential", "X-Goog-Signature", "apikey"]) assert.equal(isSecretParam(name), true, name);
});

test("redactUrlsIn redacts every URL in a message and leaves the rest", () => {
  assert.equal(
    redactUrlsIn('Cannot download "https://u:p@h/a?sig=1": redirected to "http://x/y?token=2" after 3 tries'),
    'Cannot download "https://h/a?sig=REDACTED": redirected to "http://x/y?token=REDACTED" after 3 tries',
  );
});
