/**
 * One HTTP(S) GET with manual redirects (only to http: or https:), an idle timeout on the socket (which also
 * bounds the wait for the response headers) and abort support, on node's http/https modules (leaner and faster than fetch() + Readable.fromWeb for big bodies).
 */
import http, { type IncomingMessage } from "node:http";
import https from "node:https";
import { redactUrl } from "../core/redact.js";
import { FetchError } from "../lib/errors.js";

/** Redirects followed before giving up (reason too-many-redirects). */
export const MaxRedirects = 10;

/** A response with a status the caller handles (2xx), and the URL it came from after redirects. */
export interface OpenedResponse {
  res: IncomingMessage;
  url: string;
}

/**
 * GETs `url`, following redirects; rejects with FetchError on network errors, bad redirects and timeouts. Error
 * messages are redacted (core/redact.ts); the returned `url` is not, since it may be fetched again.
 */
export async function openUrl(url: string, headers: Record<string, string>, idleTimeoutMs: number, signal?: AbortSignal): Promise<OpenedResponse> {
  let current = parseHttpUrl(url, url);
  let sendHeaders = { ...headers };
  for (let hop = 0; hop <= MaxRedirects; hop++) {
    const res = await getOnce(current, sendHeaders, idleTimeoutMs, signal);
    const status = res.statusCode ?? 0;
    if (status < 300 || status >= 400 || status === 304) return { res, url: current.href };
    res.resume();
    const location = res.headers.location;
    if (!location) throw new FetchError("http-status", `Cannot download "${redactUrl(url)}": HTTP ${status} without a Location header`, { status, retryable: false });
    const next = parseHttpUrl(location, url, current);
    if (next.host !== current.host) sendHeaders = dropCredentials(sendHeaders);
    current = next;
  }
  throw new FetchError("too-many-redirects", `Cannot download "${redactUrl(url)}": more than ${MaxRedirects} redirects`, { retryable: false });
}

function parseHttpUrl(text: string, original: string, base?: URL): URL {
  let u: URL;
  try {
    u = new URL(text, base);
  } catch (e) {
    throw new FetchError("bad-redirect", `Cannot download "${redactUrl(original)}": invalid URL "${redactUrl(text)}"`, { retryable: false }, { cause: e });
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") {
    const reason = base ? "bad-redirect" : "unreachable";
    throw new FetchError(reason, `Cannot download "${redactUrl(original)}": ${base ? "redirected to" : "unsupported URL"} "${redactUrl(u.href)}" (only http and https are allowed)`, { retryable: false });
  }
  return u;
}

function dropCredentials(h: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(h).filter(([k]) => !["authorization", "cookie"].includes(k.toLowerCase())));
}

function getOnce(u: URL, headers: Record<string, string>, idleTimeoutMs: number, signal?: AbortSignal): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const mod = u.protocol === "https:" ? https : http;
    const req = mod.get(u, { headers: { "accept-encoding": "identity", "user-agent": "basecache", ...headers }, signal });
    let response: IncomingMessage | undefined;
    req.setTimeout(idleTimeoutMs, () => {
      const err = new FetchError("stalled", `Cannot download "${redactUrl(u.href)}": no data for ${idleTimeoutMs} ms`, { retryable: true });
      // Destroy the response too, so that a reader of the body sees this error and not a bare "aborted".
      response?.destroy(err);
      req.destroy(err);
    });
    req.once("response", (res) => {
      response = res;
      resolve(res);
    });
    req.once("error", (e) => reject(classifyNetworkError(e, redactUrl(u.href), signal)));
  });
}

const localErrnos = new Set(["ENOSPC", "EDQUOT", "EROFS", "EIO", "EACCES", "EPERM", "EBADF", "EFBIG"]);

/** Maps a socket-level error to FetchError (retryable), keeping FetchErrors and aborts as they are. */
export function classifyNetworkError(e: unknown, url: string, signal?: AbortSignal): unknown {
  if (e instanceof FetchError) return e;
  if (signal?.aborted) return signal.reason ?? e;
  const err = e as NodeJS.ErrnoException;
  // node's HTTP parser (llhttp) refuses an answer that is not HTTP, or a bad Content-Length: codes HPE_*.
  // NOTE: checked first, since such an error carries a `reason` of its own, as our refusals do.
  if (e instanceof Error && (err.code ?? "").startsWith("HPE_")) {
    return new FetchError("bad-response", `Cannot download "${url}": the origin's answer is not valid HTTP (${err.code ?? ""}: ${err.message})`, { retryable: false }, { cause: e });
  }
  // Refusals, disk errors and qemu-img failures raised while reading the body are not network errors.
  if (!(e instanceof Error) || "reason" in e || "details" in e || localErrnos.has(err.code ?? "")) return e;
  const unreachable = ["ECONNREFUSED", "ENOTFOUND", "EHOSTUNREACH", "ENETUNREACH", "EAI_AGAIN"].includes(err.code ?? "");
  return new FetchError(unreachable ? "unreachable" : "truncated", `Cannot download "${url}": ${err.code ?? err.message}`, { retryable: true }, { cause: e });
}
