// Copy the third-party browser files engage serves into its static folder.
//
// They come from the npm registry through package.json and its lock file, so
// the repository never carries a copy of them: run `npm ci && npm run vendor`
// after a fresh clone. The destination folder is git-ignored.
//
// A missing source is an error, not a warning: a quietly absent htmx would
// only show up later as a page that no longer swaps anything.

import { copyFileSync, existsSync, mkdirSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const vendorDir = join(root, "engage", "static", "engage", "vendor");

// Source (inside node_modules) -> file name under the vendor folder.
const files = [
  ["htmx.org/dist/htmx.min.js", "htmx.min.js"],
  // The rich text editor of the compose panel (SPEC S5) and its stylesheet.
  ["trix/dist/trix.umd.min.js", "trix.umd.min.js"],
  ["trix/dist/trix.css", "trix.css"],
];

mkdirSync(vendorDir, { recursive: true });

let missing = 0;
for (const [source, target] of files) {
  const from = join(root, "node_modules", source);
  const to = join(vendorDir, target);
  if (!existsSync(from)) {
    console.error(`copy-vendor: ${relative(root, from)} is missing; run "npm ci" first.`);
    missing += 1;
    continue;
  }
  copyFileSync(from, to);
  console.log(`copy-vendor: ${relative(root, from)} -> ${relative(root, to)}`);
}

if (missing > 0) {
  process.exit(1);
}
