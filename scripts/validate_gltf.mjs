// Validate glTF/GLB files with the Khronos glTF validator (npm package gltf-validator).
// Usage: node scripts/validate_gltf.mjs FILE... ; prints one JSON report per file (an array)
// and exits 1 if any file has errors. NODE_PATH or a local node_modules must provide gltf-validator.
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.join(process.cwd(), "noop.js"));
const validator = require("gltf-validator");

const reports = [];
let failed = false;
for (const file of process.argv.slice(2)) {
  const data = new Uint8Array(await readFile(file));
  const report = await validator.validateBytes(data, {
    uri: path.basename(file),
    maxIssues: 100,
    externalResourceFunction: (uri) => readFile(path.resolve(path.dirname(file), decodeURIComponent(uri))),
  });
  reports.push({ file, version: validator.version(), issues: report.issues });
  if (report.issues.numErrors > 0) failed = true;
}
console.log(JSON.stringify(reports, null, 1));
process.exit(failed ? 1 : 0);
