// Prints the gzipped size of the JavaScript the first screen loads (the entry chunk and the
// chunks it imports statically, as listed by index.html's modulepreload links) and fails the
// build above the budget. Route chunks load later and are listed for information.
import { readFileSync, readdirSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { join } from "node:path";

const BUDGET = 250 * 1024;
const dist = new URL("../dist/", import.meta.url).pathname;
const html = readFileSync(join(dist, "index.html"), "utf8");
const first = [...html.matchAll(/(?:src|href)="\/?(assets\/[^"]+\.js)"/g)].map((m) => m[1]);
const gz = (f) => gzipSync(readFileSync(join(dist, f)), { level: 9 }).length;
const kb = (n) => `${(n / 1024).toFixed(1)} KB`;

let total = 0;
for (const f of new Set(first)) {
  const n = gz(f);
  total += n;
  console.log(`first screen  ${f.padEnd(48)} ${kb(n)} gzip`);
}
const rest = readdirSync(join(dist, "assets")).filter((f) => f.endsWith(".js") && !first.includes(`assets/${f}`));
for (const f of rest) console.log(`on demand     ${`assets/${f}`.padEnd(48)} ${kb(gz(`assets/${f}`))} gzip`);
console.log(`\nfirst-screen JavaScript: ${kb(total)} gzipped (budget ${kb(BUDGET)})`);
if (total > BUDGET) {
  console.error("over the first-screen budget");
  process.exit(1);
}
