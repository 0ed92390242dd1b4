// After the build: the bundle's size and what the page loads (every request is to the
// service's own origin: index.html names only files under /workbench/).
import { readdirSync, readFileSync, statSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { join } from "node:path";

const dist = join(import.meta.dirname, "..", "dist");
const files = [];
const walk = (dir) => {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else files.push(path);
  }
};
walk(dist);
let raw = 0;
let gzip = 0;
for (const path of files) {
  const bytes = readFileSync(path);
  raw += bytes.length;
  gzip += gzipSync(bytes).length;
}
const index = readFileSync(join(dist, "index.html"), "utf8");
const loads = [...index.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]).filter((url) => !url.startsWith("data:"));
const foreign = loads.filter((url) => !url.startsWith("/workbench/") && !url.startsWith("data:"));
console.log(`workbench: bundle ${files.length} files, ${(raw / 1024).toFixed(1)} KiB (${(gzip / 1024).toFixed(1)} KiB gzipped)`);
console.log(`workbench: the page loads ${loads.length + 1} requests (index.html, ${loads.join(", ")}); the API calls go to the same origin`);
if (foreign.length) {
  console.error(`workbench: requests leaving /workbench/: ${foreign.join(", ")}`);
  process.exit(1);
}
