/*
 * engage's service worker: keeps the static shell (stylesheet, scripts,
 * icons) and an offline page at hand, so engage's pages load fast and say
 * something useful when the network is gone.
 *
 * The Flask app serves this file at <prefix>/sw.js, its static files at
 * <prefix>/static/engage/… and the offline page at <prefix>/offline. Every
 * URL below is resolved against this script's own URL, never against the
 * registration scope: a host may register engage with a wider scope (even
 * "/"), and the files stay under engage's prefix all the same.
 *
 * An optional ?v=… on the script URL names the cache version, so the app can
 * roll the cache by changing the URL it registers.
 */

const SCRIPT_URL = new URL(self.location.href);
const BASE_URL = new URL("./", SCRIPT_URL);
const STATIC_URL = new URL("./static/engage/", SCRIPT_URL);
const OFFLINE_URL = new URL("./offline", SCRIPT_URL).href;

// The cache name carries engage's prefix as well as its version: the same
// origin may host other caches (the host's own, or engage mounted twice),
// and cleaning up must only ever remove engage's old ones for this prefix.
const CACHE_PREFIX = "engage-shell:" + BASE_URL.pathname + ":";
const CACHE_NAME = CACHE_PREFIX + (SCRIPT_URL.searchParams.get("v") || "1");

const SHELL_URLS = [
  "engage.css",
  "engage.js",
  "vendor/htmx.min.js",
  "icons/icon.svg",
  "icons/icon-192.png",
  "icons/icon-512.png",
  "icons/maskable-512.png",
].map((path) => new URL(path, STATIC_URL).href);

/* Only a complete, direct answer is worth keeping: a redirect (say, to a
   login page) or an error page must not be replayed later. */
function isKeepable(response) {
  return response && response.ok && !response.redirected && response.type === "basic";
}

async function store(cache, url) {
  // Skip the HTTP cache so a new version of the worker stores new files.
  const response = await fetch(new Request(url, { cache: "reload" }));
  if (!isKeepable(response)) {
    throw new Error("engage sw: " + url + " answered " + response.status);
  }
  await cache.put(url, response);
}

self.addEventListener("install", (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(CACHE_NAME);
      // Each file on its own: one missing icon should cost that icon, not
      // the whole worker.
      const results = await Promise.allSettled(
        [...SHELL_URLS, OFFLINE_URL].map((url) => store(cache, url)),
      );
      for (const result of results) {
        if (result.status === "rejected") {
          console.debug(result.reason);
        }
      }
      // The shell is versioned by CACHE_NAME, so the new worker can take over
      // at once instead of waiting for every tab to close.
      await self.skipWaiting();
    })(),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    (async () => {
      const names = await caches.keys();
      await Promise.all(
        names
          .filter((name) => name.startsWith(CACHE_PREFIX) && name !== CACHE_NAME)
          .map((name) => caches.delete(name)),
      );
      await self.clients.claim();
    })(),
  );
});

/* Static shell: answer from the cache, go to the network on a miss, and keep
   what came back for next time. */
async function cacheFirst(request) {
  const cache = await caches.open(CACHE_NAME);
  // The query string counts: a host that busts caches with ?v=… gets the
  // new file, not the stored one.
  const cached = await cache.match(request);
  if (cached) {
    return cached;
  }
  const response = await fetch(request);
  if (isKeepable(response)) {
    await cache.put(request, response.clone());
  }
  return response;
}

/* Pages: always the live page when the network answers, whatever its status;
   the offline page only when there is no network at all. Pages are never
   stored: they are personal and change all the time. */
async function networkFirst(request) {
  try {
    return await fetch(request);
  } catch (error) {
    const cache = await caches.open(CACHE_NAME);
    const offline = await cache.match(OFFLINE_URL);
    if (offline) {
      return offline;
    }
    throw error;
  }
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  // POSTs and other writes go straight through, untouched.
  if (request.method !== "GET") {
    return;
  }

  const url = new URL(request.url);

  if (request.mode === "navigate") {
    event.respondWith(networkFirst(request));
    return;
  }

  if (url.origin === self.location.origin && url.pathname.startsWith(STATIC_URL.pathname)) {
    event.respondWith(cacheFirst(request));
  }

  // Everything else (htmx partials, tracking URLs, the host's own requests)
  // is left to the browser, as if there were no worker.
});
