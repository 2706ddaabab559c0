// The scanner page's service worker (scope /scan): the page opens with no network. Every
// file of the page is cached on install; each request in scope goes to the network
// first (so a new page or catalogue arrives when online) and falls back to the cache.
// Requests outside /scan (the bundle endpoint) are left to the network: the page keeps
// its bundle in IndexedDB and says when it could not update it.
"use strict";

const VERSION = "{{VERSION}}";
const CACHE = `cardsvc-scan-${VERSION}`;
const FILES = [
  "/scan", "/scan/scan.min.js", "/scan/cardsvc-verify.min.js", "/scan/zxing_reader.wasm",
  "/scan/scan.css", "/scan/i18n.js", "/scan/i18n/zh-CN.json", "/scan/i18n/en.json",
  "/scan/manifest.webmanifest", "/scan/icon.svg",
];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(FILES)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((names) => Promise.all(names.filter((n) => n.startsWith("cardsvc-scan-") && n !== CACHE)
      .map((n) => caches.delete(n))))
    .then(() => self.clients.claim()));
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin) return;
  if (url.pathname !== "/scan" && !url.pathname.startsWith("/scan/")) return;
  event.respondWith((async () => {
    const cache = await caches.open(CACHE);
    try {
      const response = await fetch(event.request);
      if (response.ok) await cache.put(event.request, response.clone());
      return response;
    } catch (error) {
      // The page varies by language (Cookie, Accept-Language): offline, the one kept.
      const kept = await cache.match(event.request, { ignoreSearch: true, ignoreVary: true });
      if (kept) return kept;
      throw error;
    }
  })());
});
