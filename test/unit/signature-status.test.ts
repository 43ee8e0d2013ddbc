import { test } from "node:test";
import assert from "node:assert/strict";
import { decideSignature } from "../../src/core/signature-status.js";

const fpr = "A".repeat(40);
const url = "https://bob:hunter2@cloud.example/SHA256SUMS";
const good = ["[GNUPG:] NEWSIG", "[GNUPG:] KEY_CONSIDERED " + fpr + " 0", "[GNUPG:] GOODSIG 1234567890ABCDEF Test <t@example>", `[GNUPG:] VALIDSIG ${fpr} 2026-12-02 1796000000 0 4 0 22 8 00 ${fpr}`];
const unknown = ["[GNUPG:] NEWSIG", "[GNUPG:] ERRSIG 1111222233334444 22 8 00 1796000000 9 -", "[GNUPG:] NO_PUBKEY 1111222233334444"];

function outcome(lines: string[]): string {
  const v = decideSignature({ statusLines: lines, url });
  return v.accept ? ("fingerprint" in v ? `good ${v.fingerprint.slice(0, 4)}` : "accept") : v.reason;
}

const table: [string, string[], string][] = [
  ["GOODSIG with VALIDSIG", good, "good AAAA"],
  ["one good signature beside one by a key not supplied (Ubuntu's two keys)", [...unknown, ...good], "good AAAA"],
  ["GOODSIG without VALIDSIG is not enough", good.slice(0, 3), "signature-invalid"],
  ["BADSIG", ["[GNUPG:] NEWSIG", "[GNUPG:] BADSIG 1234567890ABCDEF Test <t@example>"], "signature-invalid"],
  ["BADSIG beside a good one refuses", [...good, "[GNUPG:] BADSIG 1234567890ABCDEF Test"], "signature-invalid"],
  ["a good block followed by a second signed text (gpgv stops with ERROR)", ["[GNUPG:] PLAINTEXT 74 0 ", ...good, "[GNUPG:] ERROR proc_pkt.plaintext 89_BAD_DATA"], "signature-invalid"],
  ["two signed texts, even without ERROR", ["[GNUPG:] PLAINTEXT 74 0 ", ...good, "[GNUPG:] PLAINTEXT 74 0 ", ...good], "signature-invalid"],
  ["one signed text (a clearsigned file)", ["[GNUPG:] PLAINTEXT 74 0 ", ...good], "good AAAA"],
  ["an unknown key", unknown, "signature-unknown-key"],
  ["ERRSIG 9 without NO_PUBKEY", ["[GNUPG:] ERRSIG 1111222233334444 22 8 00 1796000000 9 -"], "signature-unknown-key"],
  ["ERRSIG for another cause (an unsupported algorithm)", ["[GNUPG:] ERRSIG 1111222233334444 99 8 00 1796000000 4 -"], "signature-invalid"],
  ["an expired key (gpgv still writes VALIDSIG)", ["[GNUPG:] EXPKEYSIG 1234567890ABCDEF Test", `[GNUPG:] VALIDSIG ${fpr} x`], "signature-key-expired"],
  ["a revoked key", ["[GNUPG:] REVKEYSIG 1234567890ABCDEF Test", `[GNUPG:] VALIDSIG ${fpr} x`], "signature-key-revoked"],
  ["an expired signature", ["[GNUPG:] EXPSIG 1234567890ABCDEF Test", `[GNUPG:] VALIDSIG ${fpr} x`], "signature-expired"],
  ["no signature data", ["[GNUPG:] NODATA 3"], "signature-invalid"],
  ["nothing at all (gpgv crashed, or was stopped)", [], "signature-invalid"],
  ["text that only looks like a status line is ignored", ["gpgv: [GNUPG:] GOODSIG x", `x [GNUPG:] VALIDSIG ${fpr}`], "signature-invalid"],
];
for (const [what, lines, want] of table) test(what, () => assert.equal(outcome(lines), want));

test("a refusal names the signed file's URL without its password, and the key", () => {
  const v = decideSignature({ statusLines: unknown, url });
  assert.equal(v.accept, false);
  if (v.accept) return;
  assert.match(v.message, /cloud\.example\/SHA256SUMS/);
  assert.match(v.message, /1111222233334444/);
  assert.doesNotMatch(v.message, /hunter2/);
});
