import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";

/** PEM files on disk. */
export interface KeyPair {
  certPath: string;
  keyPath: string;
}

export interface CertAuthority extends KeyPair {
  dir: string;
  /** Signs a client certificate for `user` in `groups` (the API server maps CN to user, O to groups). */
  issueClientCert(name: string, user: string, groups: string[]): Promise<KeyPair>;
  /** Signs a serving certificate for the loopback addresses, or for `altNames` (openssl form: `IP:x`, `DNS:y`). */
  issueServingCert(name: string, altNames?: string[]): Promise<KeyPair>;
}

// NOTE: node 20's crypto can make keys but not X.509 certificates, so openssl signs them.
async function openssl(args: string[], cwd: string): Promise<void> {
  await execa("openssl", args, { cwd, stdin: "ignore" });
}

// P-256 keys: generating them takes milliseconds, RSA takes far longer and tests mint many users.
async function newKey(dir: string, name: string): Promise<string> {
  const keyPath = join(dir, `${name}.key`);
  await openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", keyPath], dir);
  return keyPath;
}

// Subject components may hold characters that openssl's -subj syntax treats specially.
function subjectPart(value: string): string {
  return value.replace(/[\\/+,=]/g, (c) => `\\${c}`);
}

let serial = 1;

async function sign(ca: KeyPair, dir: string, name: string, subject: string, extensions: string): Promise<KeyPair> {
  const keyPath = await newKey(dir, name);
  const csr = join(dir, `${name}.csr`);
  const ext = join(dir, `${name}.ext`);
  const certPath = join(dir, `${name}.crt`);
  await writeFile(ext, extensions);
  await openssl(["req", "-new", "-key", keyPath, "-subj", subject, "-out", csr], dir);
  await openssl(
    ["x509", "-req", "-in", csr, "-CA", ca.certPath, "-CAkey", ca.keyPath, "-set_serial", String(serial++ + Date.now()), "-days", "2", "-sha256", "-extfile", ext, "-out", certPath],
    dir,
  );
  return { certPath, keyPath };
}

/** Creates a throwaway certificate authority in `dir`. */
export async function createCertAuthority(dir: string): Promise<CertAuthority> {
  const keyPath = await newKey(dir, "ca");
  const certPath = join(dir, "ca.crt");
  await openssl(
    ["req", "-x509", "-new", "-key", keyPath, "-subj", "/CN=basecache-test-ca", "-days", "2", "-sha256", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", certPath],
    dir,
  );
  const ca: KeyPair = { certPath, keyPath };
  return {
    dir,
    ...ca,
    issueClientCert: (name, user, groups) => {
      const subject = [...groups.map((g) => `/O=${subjectPart(g)}`), `/CN=${subjectPart(user)}`].join("");
      return sign(ca, dir, name, subject, "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n");
    },
    issueServingCert: (name, altNames = ["IP:127.0.0.1", "DNS:localhost", "DNS:kubernetes.default.svc"]) =>
      sign(ca, dir, name, `/CN=${subjectPart(name)}`, `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=${altNames.join(",")}\n`),
  };
}

/** Creates the RSA key pair the API server signs and verifies service-account tokens with. */
export async function createServiceAccountKeys(dir: string): Promise<{ privatePath: string; publicPath: string }> {
  const privatePath = join(dir, "sa.key");
  const publicPath = join(dir, "sa.pub");
  await openssl(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", privatePath], dir);
  await openssl(["pkey", "-in", privatePath, "-pubout", "-out", publicPath], dir);
  return { privatePath, publicPath };
}

/** Base64 of a file, for kubeconfig `*-data` fields. */
export async function fileBase64(path: string): Promise<string> {
  return (await readFile(path)).toString("base64");
}
