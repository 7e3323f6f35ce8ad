// Prints the gzipped JavaScript each screen needs and fails the build when the first screen
// (index.html's entry and its static imports) is over the 250 KB budget. Screens behind
// React.lazy are listed with the entry included: what a person waits for on a cold load of
// that URL. Sizes come from Vite's manifest (dist/.vite/manifest.json).
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { join } from "node:path";

const BUDGET = 250 * 1024;
// `node scripts/bundle-size.mjs [dist-dir]` (default web/dist; the E2E run checks its own build).
const dist = process.argv[2] ?? new URL("../dist/", import.meta.url).pathname;
const manifest = JSON.parse(readFileSync(join(dist, ".vite/manifest.json"), "utf8"));
const gz = new Map();
const size = (file) => {
  if (!gz.has(file)) gz.set(file, gzipSync(readFileSync(join(dist, file)), { level: 9 }).length);
  return gz.get(file);
};
const kb = (n) => `${(n / 1024).toFixed(1)} KB`;

/** The JS files a chunk loads before it runs: itself and its static imports, transitively. */
function closure(key, seen = new Set()) {
  const chunk = manifest[key];
  if (!chunk || seen.has(chunk.file)) return seen;
  seen.add(chunk.file);
  for (const k of chunk.imports ?? []) closure(k, seen);
  return seen;
}
const total = (files) => [...files].filter((f) => f.endsWith(".js")).reduce((n, f) => n + size(f), 0);

const entryKey = Object.keys(manifest).find((k) => manifest[k].isEntry);
const first = closure(entryKey);
const firstSize = total(first);
console.log(`first screen (sign-in): ${kb(firstSize)} gzipped JavaScript (budget ${kb(BUDGET)}): ${[...first].join(", ")}`);
for (const key of manifest[entryKey].dynamicImports ?? []) {
  const files = closure(key, new Set(first));
  const name = key.replace(/^src\/pages\//, "").replace(/\.tsx$/, "");
  console.log(`  ${name.padEnd(20)} +${kb(total(files) - firstSize).padStart(9)}  = ${kb(total(files))} on a cold load`);
}
if (firstSize > BUDGET) {
  console.error(`first-screen JavaScript is ${kb(firstSize)} gzipped, over the ${kb(BUDGET)} budget`);
  process.exit(1);
}
