/**
 * URLs as we may show them: in logs, errors, status, Events, `--json` and the sidecar. A URL can carry a
 * password (`https://user:pass@host/`) or a signed query (S3, GCS, Azure SAS, API keys); those parts are
 * replaced before a URL is recorded anywhere. Fetching uses the URL as given; only what is shown is redacted.
 */

/** What a redacted value reads as. */
export const Redacted = "REDACTED";

// Query parameter names (lowercase) whose value is a secret.
const secretNames = new Set([
  "x-amz-signature",
  "x-amz-credential",
  "x-amz-security-token",
  "x-goog-signature",
  "x-goog-credential",
  "x-goog-security-token",
  "googleaccessid",
  "sig",
  "signature",
  "token",
  "access_token",
  "id_token",
  "refresh_token",
  "auth",
  "authorization",
  "api_key",
  "apikey",
  "api-key",
  "key",
  "password",
  "passwd",
  "pwd",
  "secret",
  "client_secret",
  "session",
  "sessionid",
  "jwt",
  "code",
]);

// Names that are secrets whatever their prefix or suffix: `upload_token`, `X-Custom-Signature`, `db_password`.
const secretPattern = /token|secret|passw|signature|credential|api[-_]?key|auth/i;

/** Whether a query parameter named `name` holds a secret. */
export function isSecretParam(name: string): boolean {
  const n = name.toLowerCase();
  return secretNames.has(n) || secretPattern.test(n);
}

/**
 * `url` with its userinfo removed and the values of secret query parameters replaced by `REDACTED`. Text that
 * does not parse as a URL has anything between `//` and `@` removed, and is otherwise returned as it is.
 */
export function redactUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return url.replace(/\/\/[^/?#]*@/, "//");
  }
  u.username = "";
  u.password = "";
  if (u.search !== "") u.search = redactQuery(u.search.slice(1));
  // An OAuth implicit grant puts its token in the fragment.
  if (u.hash.includes("=")) u.hash = redactQuery(u.hash.slice(1));
  return u.href;
}

// Rebuilt by hand rather than through URLSearchParams, so that the parameters we keep are not re-encoded.
function redactQuery(query: string): string {
  return query
    .split("&")
    .map((pair) => {
      const eq = pair.indexOf("=");
      const rawName = eq < 0 ? pair : pair.slice(0, eq);
      let name = rawName;
      try {
        name = decodeURIComponent(rawName.replace(/\+/g, " "));
      } catch {
        // A malformed escape: judge the name as written.
      }
      return eq >= 0 && isSecretParam(name) ? `${rawName}=${Redacted}` : pair;
    })
    .join("&");
}

/** `text` (an error message, say) with every http(s) URL in it redacted. */
export function redactUrlsIn(text: string): string {
  return text.replace(/\bhttps?:\/\/[^\s"'<>]+/gi, (m) => redactUrl(m));
}
