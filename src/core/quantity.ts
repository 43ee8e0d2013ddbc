const suffixes: Record<string, bigint> = {
  "": 1n,
  k: 1000n,
  M: 1000n ** 2n,
  G: 1000n ** 3n,
  T: 1000n ** 4n,
  P: 1000n ** 5n,
  E: 1000n ** 6n,
  Ki: 1024n,
  Mi: 1024n ** 2n,
  Gi: 1024n ** 3n,
  Ti: 1024n ** 4n,
  Pi: 1024n ** 5n,
  Ei: 1024n ** 6n,
};

const pattern = /^([0-9]+)(?:\.([0-9]+))?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$/;

/**
 * Parses a Kubernetes quantity of bytes (`1Gi`, `500M`, `1.5Gi`, `1073741824`) into a whole number of bytes,
 * rounding a fractional result up as the API server does.
 * @throws RangeError when the text is not such a quantity or exceeds Number.MAX_SAFE_INTEGER
 */
export function parseByteQuantity(text: string): number {
  const m = pattern.exec(text.trim());
  if (!m) throw new RangeError(`Cannot parse quantity "${text}": expected a number with an optional suffix such as Ki, Mi, Gi, k, M or G`);
  const [, whole = "0", frac = "", suffix = ""] = m;
  const unit = suffixes[suffix] ?? 1n;
  const scale = 10n ** BigInt(frac.length);
  const numerator = (BigInt(whole) * scale + BigInt(frac || "0")) * unit;
  const bytes = (numerator + scale - 1n) / scale;
  if (bytes > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError(`Cannot parse quantity "${text}": too large`);
  return Number(bytes);
}

/** Formats bytes for humans with binary units (`1.5 GiB`). */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let value = bytes;
  let i = 0;
  while (Math.abs(value) >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  return i === 0 ? `${value} B` : `${value.toFixed(value >= 100 ? 0 : 1)} ${units[i]}`;
}
