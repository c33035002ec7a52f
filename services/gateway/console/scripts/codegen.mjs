// Generates the TypeScript of the suite's contracts into src/gen/ (not committed) with the
// repository's buf binary and the local protoc-gen-es plugin (buf.gen.yaml).
//
// buf: $SKYBRIDGE_BUF, else the repository's .venv/bin/buf (installed by `make install`).
// The googleapis protos come from build/googleapis/, which `python protos/generate.py`
// (and so `make install`) writes; without them buf cannot resolve the imports.
import { execFileSync } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(dirname(fileURLToPath(import.meta.url)));
const root = resolve(here, "../../..");
const buf = process.env.SKYBRIDGE_BUF || resolve(root, ".venv/bin/buf");

function fail(message) {
  console.error(`codegen: ${message}`);
  process.exit(1);
}

if (!existsSync(buf)) {
  fail(`no buf binary at ${buf}: run \`make install\` at the repository root or set SKYBRIDGE_BUF`);
}
if (!existsSync(resolve(root, "build/googleapis/google/api/field_behavior.proto"))) {
  fail("build/googleapis/ is missing: run `.venv/bin/python protos/generate.py` at the repository root");
}
if (!existsSync(resolve(here, "node_modules/.bin/protoc-gen-es"))) {
  fail("node_modules/.bin/protoc-gen-es is missing: run `npm ci` first");
}
rmSync(resolve(here, "src/gen"), { recursive: true, force: true });
try {
  execFileSync(buf, ["generate"], { cwd: here, stdio: "inherit" });
} catch {
  fail("buf generate failed (see above)");
}
console.log("codegen: src/gen/ written from ../../../protos");
