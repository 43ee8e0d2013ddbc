import { pino, destination, type Logger } from "pino";

export type { Logger };

/**
 * The process's root logger: JSON lines on stderr (stdout belongs to CLI results). Level from
 * BASECACHE_LOG_LEVEL, default info.
 */
export function createRootLogger(component: string, level = process.env.BASECACHE_LOG_LEVEL ?? "info"): Logger {
  return pino(
    { level, base: { component, pid: process.pid }, formatters: { level: (label) => ({ level: label }) } },
    destination({ fd: 2, sync: true }),
  );
}

/** A logger that discards everything, for library calls whose caller gave none. */
export const silentLogger: Logger = pino({ level: "silent" });
