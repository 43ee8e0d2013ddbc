/**
 * Registry authentication decisions: reading a WWW-Authenticate challenge, building the token request, and
 * finding basic credentials for a host in a Docker config file (`auths`). Pure.
 */
import { hostWithoutPort } from "./oci-ref.js";

export interface AuthChallenge {
  /** Lowercased scheme: `bearer`, `basic`, or another we do not speak. */
  scheme: string;
  /** Parameters with lowercased names: realm, service, scope, ... */
  params: Record<string, string>;
}

/**
 * Parses the first challenge of a WWW-Authenticate header (`Bearer realm="...",service="...",scope="..."`).
 * Returns undefined for an empty or unreadable header.
 */
export function parseAuthChallenge(header: string | null | undefined): AuthChallenge | undefined {
  if (!header) return undefined;
  const m = /^\s*([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*)\s*/.exec(header);
  if (!m) return undefined;
  const scheme = (m[1] as string).toLowerCase();
  const params: Record<string, string> = {};
  let rest = header.slice(m[0].length);
  const param = /^([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*(?:,\s*|$)/;
  for (;;) {
    const p = param.exec(rest);
    if (!p) break;
    const name = (p[1] as string).toLowerCase();
    const value = p[2] !== undefined ? p[2].replace(/\\(.)/g, "$1") : (p[3] ?? "");
    if (!(name in params)) params[name] = value;
    rest = rest.slice(p[0].length);
    if (rest.length === 0) break;
  }
  return { scheme, params };
}

/** The token scope for pulling a repository. */
export function pullScope(repository: string): string {
  return `repository:${repository}:pull`;
}

/**
 * The URL to ask for a bearer token: the challenge's realm with `service` and `scope` (ours when the challenge
 * names none). The realm must be http(s); plain http only when the registry itself is spoken to over http,
 * so a TLS registry cannot send our credentials to a plaintext token server.
 */
export function planTokenRequest(
  challenge: AuthChallenge,
  repository: string,
  registryScheme: "http" | "https",
): { ok: true; url: string } | { ok: false; message: string } {
  const realm = challenge.params.realm;
  if (!realm) return { ok: false, message: "the bearer challenge names no realm" };
  let url: URL;
  try {
    url = new URL(realm);
  } catch {
    return { ok: false, message: `the token realm "${realm}" is not a URL` };
  }
  if (url.protocol !== "https:" && !(url.protocol === "http:" && registryScheme === "http")) {
    return { ok: false, message: `the token realm "${realm}" is not https` };
  }
  if (challenge.params.service) url.searchParams.set("service", challenge.params.service);
  url.searchParams.set("scope", challenge.params.scope ?? pullScope(repository));
  return { ok: true, url: url.toString() };
}

/** Parses the token out of a token endpoint's JSON answer (`token`, or the OAuth2 `access_token`). */
export function parseTokenResponse(body: string): string | undefined {
  try {
    const doc: unknown = JSON.parse(body);
    if (typeof doc !== "object" || doc === null) return undefined;
    const { token, access_token: accessToken } = doc as Record<string, unknown>;
    const t = typeof token === "string" && token.length > 0 ? token : accessToken;
    return typeof t === "string" && t.length > 0 && !/[\r\n]/.test(t) ? t : undefined;
  } catch {
    return undefined;
  }
}

export interface BasicCredentials {
  username: string;
  password: string;
}

const dockerHubKeys = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/** The registry host an `auths` key names: keys may be `host`, `host:port` or a URL such as `https://index.docker.io/v1/`. */
function authKeyHost(key: string): string {
  const noScheme = key.replace(/^[a-z]+:\/\//i, "");
  return (noScheme.split("/")[0] ?? "").toLowerCase();
}

/**
 * Finds basic credentials for `registry` (as written in the reference) in the text of a Docker config file
 * (`{"auths": {"host": {"auth": base64("user:pass")}}}`, also the format of Kubernetes pull secrets). An exact
 * host:port match wins over a key without a port. Returns undefined when nothing matches or the file is unreadable.
 */
export function findDockerConfigCredentials(configText: string, registry: string): BasicCredentials | undefined {
  let doc: unknown;
  try {
    doc = JSON.parse(configText);
  } catch {
    return undefined;
  }
  const auths = typeof doc === "object" && doc !== null ? (doc as Record<string, unknown>).auths : undefined;
  if (typeof auths !== "object" || auths === null) return undefined;
  const want = registry.toLowerCase();
  const wanted = dockerHubKeys.includes(want) ? dockerHubKeys : [want];
  const entries = Object.entries(auths as Record<string, unknown>).map(([k, v]) => ({ host: authKeyHost(k), v }));
  const exact = entries.find((e) => wanted.includes(e.host));
  const loose = entries.find((e) => wanted.some((w) => hostWithoutPort(w) === e.host));
  return credentialsOf((exact ?? loose)?.v);
}

function credentialsOf(entry: unknown): BasicCredentials | undefined {
  if (typeof entry !== "object" || entry === null) return undefined;
  const e = entry as Record<string, unknown>;
  if (typeof e.username === "string" && typeof e.password === "string" && e.username.length > 0) {
    return { username: e.username, password: e.password };
  }
  if (typeof e.auth !== "string" || e.auth.length === 0) return undefined;
  const decoded = Buffer.from(e.auth, "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  if (colon <= 0) return undefined;
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** The value of an `Authorization: Basic` header. */
export function basicAuthorization(creds: BasicCredentials): string {
  return `Basic ${Buffer.from(`${creds.username}:${creds.password}`, "utf8").toString("base64")}`;
}
