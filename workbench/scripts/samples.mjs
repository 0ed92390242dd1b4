// The sample job configs (configs/training/*.yaml), bundled so the Training page can
// preload them: the page then submits them as JSON through the public API.
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";

const dir = join(import.meta.dirname, "..", "..", "configs", "training");
const samples = readdirSync(dir)
  .filter((name) => name.endsWith(".yaml"))
  .sort()
  .map((name) => ({ name: name.replace(/\.yaml$/, ""), spec: parse(readFileSync(join(dir, name), "utf8")) }));
writeFileSync(join(import.meta.dirname, "..", "src", "samples.json"), JSON.stringify(samples, null, 1) + "\n");
console.log(`workbench: ${samples.length} sample job configs bundled`);
