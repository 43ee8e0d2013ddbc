/**
 * A real HTTP origin on 127.0.0.1, port 0, for fetch tests and benchmarks. Each path is a route: a file (with
 * Range, ETag and Last-Modified), or a hostile behaviour (status codes, 500 then ok, connection dropped
 * mid-body, stall, slow body, wrong Content-Length, redirects to loops or file://, an HTML page, raw bytes that
 * are not a valid HTTP answer, no answer at all, or no answer until the test opens a gate). It counts
 * requests, body bytes and answer statuses per path so tests can prove "downloaded once", "a cache hit downloads
 * nothing" and "the resume was a 206 for the rest". Range is `bytes=N-` with If-Range (ETag or Last-Modified,
 * compared exactly) as RFC 9110 says: a validator that does not match gets the whole file with 200; If-Match and
 * If-Unmodified-Since that do not hold get 412.
 */
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { createHash } from "node:crypto";

/** Bytes to serve: in memory, or a file on disk (streamed, for big images). */
export type Body = Buffer | { file: string };

/** Options of a file route. */
export interface FileOptions {
  /** Strong ETag; default a hash of the path and size. `false` sends none. */
  etag?: string | false;
  lastModified?: string | false;
  contentType?: string;
  /** Honour Range requests (default true). */
  ranges?: boolean;
  /** Send no Content-Length (chunked). */
  chunked?: boolean;
}

/** What a path does. */
export type Route =
  | { kind: "file"; body: Body; opts?: FileOptions }
  | { kind: "status"; code: number }
  | { kind: "fail-then-ok"; failures: number; code: number; body: Body; opts?: FileOptions }
  | { kind: "drop"; afterBytes: number; times: number; body: Body; opts?: FileOptions }
  | { kind: "stall"; afterBytes: number; times: number; body: Body; opts?: FileOptions }
  | { kind: "slow"; chunkBytes: number; intervalMs: number; body: Body; opts?: FileOptions }
  | { kind: "wrong-length"; declared: number; body: Body }
  | { kind: "redirect"; to: string; code?: number }
  | { kind: "html" }
  /** Writes these bytes to the socket as the whole answer (not through node's HTTP writer), then closes it. */
  | { kind: "raw-answer"; bytes: Buffer }
  /** Accepts the request and never answers. */
  | { kind: "silent" }
  /** Holds every request until `open` resolves, then answers as a file route (a client that gave up meanwhile gets nothing). */
  | { kind: "gated"; open: Promise<void>; body: Body; opts?: FileOptions };

/** A running origin. */
export class Origin {
  private readonly routes = new Map<string, Route>();
  private readonly requests = new Map<string, number>();
  private readonly bytes = new Map<string, number>();
  /** Request headers seen per path, in order. */
  readonly seen = new Map<string, http.IncomingHttpHeaders[]>();
  /** Statuses of the file answers per path, in order (200, 206, 416). */
  readonly answered = new Map<string, number[]>();
  private readonly sockets = new Set<Socket>();

  private constructor(private readonly server: http.Server) {}

  /** Starts an origin on `host` (default 127.0.0.1; the real node's pods reach only its bridge address) with a free port. */
  static async start(host = "127.0.0.1"): Promise<Origin> {
    const server = http.createServer();
    const origin = new Origin(server);
    server.on("request", (req, res) => void origin.handle(req, res).catch(() => res.destroy()));
    server.on("connection", (s) => {
      origin.sockets.add(s);
      s.on("close", () => origin.sockets.delete(s));
    });
    await new Promise<void>((resolve) => server.listen(0, host, resolve));
    return origin;
  }

  /** The URL of `path` on this origin. */
  url(path: string): string {
    const { address, port } = this.server.address() as AddressInfo;
    return `http://${address}:${port}${path}`;
  }

  /** Sets what `path` does; returns its URL. */
  route(path: string, route: Route): string {
    this.routes.set(path, route);
    return this.url(path);
  }

  /** Serves `body` as a plain file at `path`; returns its URL. */
  serve(path: string, body: Body, opts?: FileOptions): string {
    return this.route(path, { kind: "file", body, ...(opts ? { opts } : {}) });
  }

  /**
   * Serves `body` at `path` only once `release` is called: until then each request is held unanswered (an
   * image the origin withholds, without failing it). Returns the URL and the release.
   */
  gate(path: string, body: Body, opts?: FileOptions): { url: string; release: () => void } {
    let release = () => {};
    const open = new Promise<void>((resolve) => (release = resolve));
    return { url: this.route(path, { kind: "gated", open, body, ...(opts ? { opts } : {}) }), release };
  }

  /** Requests received for `path`. */
  requestsTo(path: string): number {
    return this.requests.get(path) ?? 0;
  }

  /** Body bytes sent for `path`. */
  bytesSentFor(path: string): number {
    return this.bytes.get(path) ?? 0;
  }

  /** Forgets the counts, headers and statuses of `path` (a test that measures one run of several). */
  resetCounts(path: string): void {
    this.requests.delete(path);
    this.bytes.delete(path);
    this.seen.delete(path);
    this.answered.delete(path);
  }

  /** Stops the origin, cutting open connections. */
  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    const n = (this.requests.get(path) ?? 0) + 1;
    this.requests.set(path, n);
    this.seen.set(path, [...(this.seen.get(path) ?? []), req.headers]);
    const route = this.routes.get(path);
    if (!route) return void res.writeHead(404).end("not found");
    switch (route.kind) {
      case "file":
        return this.sendFile(path, req, res, route.body, route.opts ?? {}, {});
      case "status":
        return void res.writeHead(route.code, { "content-type": "text/plain" }).end(`status ${route.code}`);
      case "fail-then-ok":
        if (n <= route.failures) return void res.writeHead(route.code).end(`failure ${n}`);
        return this.sendFile(path, req, res, route.body, route.opts ?? {}, {});
      case "drop":
        return this.sendFile(path, req, res, route.body, route.opts ?? {}, n <= route.times ? { dropAfter: route.afterBytes } : {});
      case "stall":
        return this.sendFile(path, req, res, route.body, route.opts ?? {}, n <= route.times ? { stallAfter: route.afterBytes } : {});
      case "slow":
        return this.sendFile(path, req, res, route.body, route.opts ?? {}, { slow: { chunkBytes: route.chunkBytes, intervalMs: route.intervalMs } });
      case "wrong-length": {
        const data = await readBody(route.body);
        res.writeHead(200, { "content-length": String(route.declared) });
        this.count(path, data.length);
        res.write(data, () => res.destroy());
        return;
      }
      case "redirect":
        return void res.writeHead(route.code ?? 302, { location: route.to }).end();
      case "raw-answer":
        this.count(path, route.bytes.length);
        return void req.socket.end(route.bytes);
      case "silent":
        return;
      case "gated":
        await route.open;
        if (req.socket.destroyed) return;
        return this.sendFile(path, req, res, route.body, route.opts ?? {}, {});
      case "html": {
        const page = Buffer.from("<!DOCTYPE html>\n<html><head><title>Not here</title></head><body><p>Please log in.</p></body></html>\n");
        this.count(path, page.length);
        return void res.writeHead(200, { "content-type": "text/html; charset=utf-8", "content-length": String(page.length) }).end(page);
      }
    }
  }

  private count(path: string, n: number): void {
    this.bytes.set(path, (this.bytes.get(path) ?? 0) + n);
  }

  private async sendFile(
    path: string,
    req: IncomingMessage,
    res: ServerResponse,
    body: Body,
    opts: FileOptions,
    fault: { dropAfter?: number; stallAfter?: number; slow?: { chunkBytes: number; intervalMs: number } },
  ): Promise<void> {
    const size = Buffer.isBuffer(body) ? body.length : (await stat(body.file)).size;
    const etag = opts.etag === false ? undefined : (opts.etag ?? `"${createHash("sha1").update(`${path}:${size}`).digest("hex").slice(0, 16)}"`);
    const lastModified = opts.lastModified === false ? undefined : (opts.lastModified ?? "Wed, 01 Jan 2025 00:00:00 GMT");
    // Preconditions as RFC 9110 13.1.1 and 13.1.4 say: a strong ETag that does not match, or a file modified
    // since the date given, gets 412 and no body.
    const ifMatch = req.headers["if-match"];
    const ifUnmodifiedSince = req.headers["if-unmodified-since"];
    const modifiedSince = ifUnmodifiedSince !== undefined && lastModified !== undefined && Date.parse(lastModified) > Date.parse(ifUnmodifiedSince);
    if ((ifMatch !== undefined && ifMatch !== "*" && ifMatch !== etag) || (ifMatch === undefined && modifiedSince)) {
      this.answered.set(path, [...(this.answered.get(path) ?? []), 412]);
      return void res.writeHead(412).end();
    }
    let start = 0;
    let status = 200;
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
    const ifRange = req.headers["if-range"];
    const validatorOk = ifRange === undefined || ifRange === etag || ifRange === lastModified;
    if (range && opts.ranges !== false && validatorOk) {
      start = Number(range[1]);
      if (start >= size) return void res.writeHead(416, { "content-range": `bytes */${size}` }).end();
      status = 206;
    }
    const headers: Record<string, string> = { "content-type": opts.contentType ?? "application/octet-stream" };
    if (opts.ranges !== false) headers["accept-ranges"] = "bytes";
    if (etag) headers.etag = etag;
    if (lastModified) headers["last-modified"] = lastModified;
    if (!opts.chunked) headers["content-length"] = String(size - start);
    if (status === 206) headers["content-range"] = `bytes ${start}-${size - 1}/${size}`;
    res.writeHead(status, headers);
    this.answered.set(path, [...(this.answered.get(path) ?? []), status]);
    await this.stream(path, res, body, start, size, fault);
  }

  private async stream(path: string, res: ServerResponse, body: Body, start: number, size: number, fault: { dropAfter?: number; stallAfter?: number; slow?: { chunkBytes: number; intervalMs: number } }): Promise<void> {
    const limit = fault.dropAfter ?? fault.stallAfter;
    const end = limit !== undefined ? Math.min(size, start + limit) : size;
    if (end > start) {
      const chunks: AsyncIterable<Buffer> = Buffer.isBuffer(body)
        ? sliceBuffer(body, start, end, fault.slow?.chunkBytes ?? 256 * 1024)
        : (createReadStream(body.file, { start, end: end - 1, highWaterMark: fault.slow?.chunkBytes ?? 1024 * 1024 }) as AsyncIterable<Buffer>);
      for await (const chunk of chunks) {
        if (res.destroyed) return;
        this.count(path, chunk.length);
        if (!res.write(chunk)) await drainOrClose(res);
        if (fault.slow) await new Promise((r) => setTimeout(r, fault.slow?.intervalMs));
      }
    }
    if (fault.dropAfter !== undefined) {
      // Let the bytes written so far reach the client, then cut the connection mid-body.
      await new Promise<void>((resolve) => res.write("", () => resolve()));
      res.socket?.destroy();
      return;
    }
    if (fault.stallAfter !== undefined) return; // keep the connection open, send nothing more
    res.end();
  }
}

function drainOrClose(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}

async function* sliceBuffer(b: Buffer, start: number, end: number, step: number): AsyncIterable<Buffer> {
  for (let o = start; o < end; o += step) yield b.subarray(o, Math.min(end, o + step));
}

async function readBody(body: Body): Promise<Buffer> {
  if (Buffer.isBuffer(body)) return body;
  const { readFile } = await import("node:fs/promises");
  return readFile(body.file);
}
