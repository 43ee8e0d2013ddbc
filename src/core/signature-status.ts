/**
 * gpgv's verdict, read from its `--status-fd` lines (doc/DETAILS in GnuPG), never from its exit code alone: a file
 * with two signatures (Ubuntu signs SHA256SUMS with two keys) exits non-zero when only one key is supplied, and an
 * exit code cannot tell a bad signature from an unknown key. src/image/gpgv.ts runs gpgv and hands the lines here.
 */
import { redactUrl } from "./redact.js";
import type { RejectReason } from "./reject-reasons.js";
import { refuse, type Verdict } from "./verdict.js";

/** A good signature: the fingerprint of the key that made it and of its primary key. */
export interface GoodSignature {
  accept: true;
  fingerprint: string;
  primaryFingerprint: string;
}

/** What `--status-fd` said, and about which file. */
export interface SignatureFacts {
  /** The status lines gpgv wrote (`[GNUPG:] KEYWORD args...`); other lines are ignored. */
  statusLines: readonly string[];
  /** The signed file's URL, for the message (redacted). */
  url: string;
}

interface StatusLine {
  keyword: string;
  args: string[];
}

function statusLinesOf(lines: readonly string[]): StatusLine[] {
  return lines.flatMap((l) => {
    const m = /^\[GNUPG:\] ([A-Z_]+)(?: (.*))?$/.exec(l.replace(/\r$/, ""));
    return m ? [{ keyword: m[1] ?? "", args: (m[2] ?? "").split(" ") }] : [];
  });
}

/** ERRSIG's return code 9: the key is not in the keyring. */
const ErrsigNoPublicKey = "9";

/**
 * Decides on gpgv's status lines: any BADSIG or ERROR, or a second signed text, refuses; otherwise a GOODSIG with its VALIDSIG accepts (another
 * signature by a key the user did not supply does not matter); otherwise the most telling of expired key, revoked
 * key, expired signature, unknown key, and no valid signature at all.
 */
export function decideSignature(f: SignatureFacts): GoodSignature | Verdict<RejectReason> {
  const lines = statusLinesOf(f.statusLines);
  const has = (k: string) => lines.some((l) => l.keyword === k);
  const first = (k: string) => lines.find((l) => l.keyword === k)?.args ?? [];
  const where = `the signature of "${redactUrl(f.url)}"`;
  if (has("BADSIG")) return refuse("signature-invalid", `${where} does not match its content (BADSIG from key ${first("BADSIG")[0] ?? "?"})`);
  // NOTE: a clearsigned file with a second signed block (a stranger's, appended) makes gpgv verify the first and
  // stop at the second with ERROR proc_pkt.plaintext: one signed message per file, or none is taken.
  if (has("ERROR") || lines.filter((l) => l.keyword === "PLAINTEXT").length > 1) {
    return refuse("signature-invalid", `${where} is not one signed message (gpgv: ${first("ERROR").join(" ") || "more than one signed text"})`);
  }
  const valid = lines.find((l) => l.keyword === "VALIDSIG");
  if (has("GOODSIG") && valid) {
    const fingerprint = valid.args[0] ?? "";
    return { accept: true, fingerprint, primaryFingerprint: valid.args[9] ?? fingerprint };
  }
  if (has("EXPKEYSIG")) return refuse("signature-key-expired", `${where} was made by key ${first("EXPKEYSIG")[0] ?? "?"}, which has expired`);
  if (has("REVKEYSIG")) return refuse("signature-key-revoked", `${where} was made by key ${first("REVKEYSIG")[0] ?? "?"}, which is revoked`);
  if (has("EXPSIG")) return refuse("signature-expired", `${where} has expired`);
  const unknown = lines.find((l) => l.keyword === "NO_PUBKEY") ?? lines.find((l) => l.keyword === "ERRSIG" && l.args[5] === ErrsigNoPublicKey);
  if (unknown) return refuse("signature-unknown-key", `${where} was made by key ${unknown.args[0] ?? "?"}, which is not among the keys supplied`);
  if (has("ERRSIG")) return refuse("signature-invalid", `${where} cannot be checked (ERRSIG code ${first("ERRSIG")[5] ?? "?"})`);
  return refuse("signature-invalid", `${where} holds no valid OpenPGP signature${has("NODATA") ? " (no signature data)" : ""}`);
}
