// Copy the files the pages load (package.json "vendorFiles": name -> path under
// node_modules) into the folder given as the only argument. Used by bin/frontend
// and by the Dockerfile's front-end stage, so both ship the same files.
import { copyFileSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const target = process.argv[2];
if (!target) {
  console.error("usage: node bin/vendor.mjs TARGET_FOLDER");
  process.exit(2);
}
const { vendorFiles } = JSON.parse(readFileSync("package.json", "utf8"));
mkdirSync(target, { recursive: true });
for (const [name, source] of Object.entries(vendorFiles)) {
  copyFileSync(source, join(target, name));
}
