/**
 * OpenPGP ASCII armor (RFC 4880 §6.2) taken off public keys: gpgv reads only binary keyrings, and users hand
 * keys over armored (a ConfigMap's text, `gpg --armor --export`). Pure: the edge decodes the base64 it returns.
 */

const begin = /^-----BEGIN PGP PUBLIC KEY BLOCK-----$/;
const end = /^-----END PGP PUBLIC KEY BLOCK-----$/;

/**
 * The base64 body of every armored public key block in `text`, in order (the CRC line and headers dropped).
 * @throws RangeError when the text holds no complete public key block, or a block's body is not base64
 */
export function dearmorPublicKeys(text: string): string[] {
  const lines = text.split("\n").map((l) => l.replace(/\r$/, "").trim());
  const blocks: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!begin.test(lines[i] ?? "")) continue;
    let j = i + 1;
    // Armor headers (`Comment: ...`, `Version: ...`) end at the first blank line.
    while (j < lines.length && (lines[j] ?? "") !== "" && /^[A-Za-z]+: /.test(lines[j] ?? "")) j++;
    const body: string[] = [];
    for (; j < lines.length && !end.test(lines[j] ?? ""); j++) {
      const l = lines[j] ?? "";
      if (l === "" || /^=[A-Za-z0-9+/]{4}$/.test(l)) continue;
      if (!/^[A-Za-z0-9+/=]+$/.test(l)) throw new RangeError(`Cannot read public key block ${blocks.length + 1}: line ${j + 1} is not base64`);
      body.push(l);
    }
    if (j >= lines.length) throw new RangeError(`Cannot read public key block ${blocks.length + 1}: it has no END line`);
    if (body.length === 0) throw new RangeError(`Cannot read public key block ${blocks.length + 1}: it is empty`);
    blocks.push(body.join(""));
    i = j;
  }
  if (blocks.length === 0) throw new RangeError("Cannot read public keys: no -----BEGIN PGP PUBLIC KEY BLOCK----- block");
  return blocks;
}

/** True when key material is armored text rather than a binary keyring (a binary packet's first byte has bit 7 set). */
export function isArmored(firstByte: number | undefined): boolean {
  return firstByte !== undefined && (firstByte & 0x80) === 0;
}
