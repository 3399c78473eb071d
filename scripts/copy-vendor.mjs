// Copy the third-party browser files engage serves into its static folder.
//
// They come from the npm registry through package.json and its lock file. The copies under
// engage/static/engage/vendor/ are committed, so that every package a host installs (a wheel,
// an sdist, `pip install` of a checkout) carries them without npm; tests/test_assets.py checks
// that they are byte for byte the files of the locked packages. After changing a version in
// package.json: `npm install`, `npm run vendor`, then commit the lock file and the copies.
//
// A missing source is an error, not a warning: a quietly absent htmx would only show up later
// as a page that no longer swaps anything. An unchanged copy is left alone.

import { copyFileSync, existsSync, mkdirSync, readFileSync } from "node:fs";
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
  if (existsSync(to) && readFileSync(to).equals(readFileSync(from))) {
    continue;
  }
  copyFileSync(from, to);
  console.log(`copy-vendor: ${relative(root, from)} -> ${relative(root, to)}`);
}

if (missing > 0) {
  process.exit(1);
}
