import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["dist/", "node_modules/", "charts/", "coverage/", ".tmp/"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ["**/*.ts"],
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/consistent-type-imports": "error",
      "no-restricted-syntax": [
        "error",
        { selector: "ExportDefaultDeclaration", message: "Use named exports only" },
      ],
    },
  },
  {
    // core is pure: no I/O, no clocks, no randomness (see STYLE.md).
    files: ["src/core/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          // node:crypto's hash functions are deterministic and do no I/O (base names are sha1 hex); nothing else
          // of it (random bytes, keys) belongs in core.
          paths: [
            { name: "node:crypto", allowImportNames: ["createHash"], message: "core may use only node:crypto's createHash" },
            { name: "crypto", message: "Import node:crypto (core may use only its createHash)" },
          ],
          patterns: [
            { group: ["node:fs*", "node:child_process", "node:net", "node:http*", "node:timers*", "fs", "child_process"], message: "core is pure: do I/O at the edges" },
            { group: ["@kubernetes/*", "execa", "pino", "../lib/*", "../image/*", "../kube/*"], message: "core imports only core" },
          ],
        },
      ],
      "no-restricted-properties": [
        "error",
        { object: "Date", property: "now", message: "Pass time in as an argument" },
        { object: "Math", property: "random", message: "Pass randomness in as an argument" },
      ],
    },
  },
  {
    files: ["bin/*.js"],
    languageOptions: { globals: { process: "readonly", URL: "readonly" } },
  },
);
