/**
 * What the harness keeps of a child process's output: the last lines of its log, read only to make a failure
 * message say what the process was doing (tests assert on API state, files, exit codes and metrics), and the
 * parser of the Prometheus text it serves.
 */
import type { Readable } from "node:stream";

const TailLines = 20;

/** Drains a log stream (so the child never blocks on a full pipe) and keeps its last lines. */
export class LogTail {
  private readonly lines: string[] = [];
  private partial = "";

  constructor(stream: Readable | null | undefined) {
    stream?.on("data", (chunk: Buffer) => {
      const parts = (this.partial + chunk.toString()).split("\n");
      this.partial = parts.pop() ?? "";
      for (const p of parts) if (p.trim()) this.lines.push(p);
      if (this.lines.length > TailLines) this.lines.splice(0, this.lines.length - TailLines);
    });
  }

  text(): string {
    return this.lines.join("\n");
  }
}

/** Parses Prometheus text exposition into `name{labels}` -> value. */
export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const i = line.lastIndexOf(" ");
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}
