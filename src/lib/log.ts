import { pino, destination, stdSerializers, type Logger } from "pino";
import { BasecacheError } from "./errors.js";

export type { Logger };

/**
 * How a logged `err` looks. An error thrown on purpose (lib/errors.ts: a refused image, a failed source, an
 * API refusal such as a 429) is an outcome, not a bug: one line with its type, code, reason and message, no
 * stack. Anything else is unexpected and keeps pino's full serialization, stack and causes included.
 */
export function serializeError(err: unknown): unknown {
  if (!(err instanceof BasecacheError)) return err instanceof Error ? stdSerializers.err(err) : err;
  const fields = err as unknown as Record<string, unknown>;
  const out: Record<string, unknown> = { type: err.name, code: err.code, message: err.message };
  for (const key of ["reason", "status", "details"]) if (fields[key] !== undefined) out[key] = fields[key];
  if (err.cause instanceof Error) out.cause = err.cause.message;
  return out;
}

/**
 * The process's root logger: JSON lines on stderr (stdout belongs to CLI results). Level from
 * BASECACHE_LOG_LEVEL, default info.
 */
export function createRootLogger(component: string, level = process.env.BASECACHE_LOG_LEVEL ?? "info"): Logger {
  return pino(
    { level, base: { component, pid: process.pid }, formatters: { level: (label) => ({ level: label }) }, serializers: { err: serializeError } },
    destination({ fd: 2, sync: true }),
  );
}

/** A logger that discards everything, for library calls whose caller gave none. */
export const silentLogger: Logger = pino({ level: "silent" });
