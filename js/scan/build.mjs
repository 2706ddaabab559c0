// Build the scanner page's files into dist/ (served by the issuer at /scan/...; nothing
// built is committed):
//   scan.min.js           the page's script (src/scan.js) with the QR decoder's JavaScript
//                         (zxing-wasm's reader) bundled in; imports ./cardsvc-verify.min.js
//   cardsvc-verify.min.js js/verify's minified bundle (built there first: node build.mjs)
//   zxing_reader.wasm     the decoder's WebAssembly, fetched from /scan (never a CDN)
//   sizes.json            bytes minified and gzipped, for the README's figures
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { build } from "esbuild";

const here = new URL(".", import.meta.url).pathname;
const verifier = `${here}../verify/dist/cardsvc-verify.min.js`;
const wasm = `${here}node_modules/zxing-wasm/dist/reader/zxing_reader.wasm`;
const out = `${here}dist`;

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
try {
  copyFileSync(verifier, `${out}/cardsvc-verify.min.js`);
} catch {
  console.error(`${verifier} is missing: build js/verify first (node js/verify/build.mjs)`);
  process.exit(1);
}
copyFileSync(wasm, `${out}/zxing_reader.wasm`);
await build({
  entryPoints: [`${here}src/scan.js`],
  outfile: `${out}/scan.min.js`,
  bundle: true,
  format: "esm",
  target: "es2022",
  platform: "browser",
  minify: true,
  legalComments: "none",
  logLevel: "warning",
  external: ["./cardsvc-verify.min.js"],
});

const size = (file) => {
  const bytes = readFileSync(`${out}/${file}`);
  return { minified: bytes.length, gzipped: gzipSync(bytes, { level: 9 }).length };
};
const files = ["cardsvc-verify.min.js", "scan.min.js", "zxing_reader.wasm"];
const sizes = Object.fromEntries(files.map((f) => [f, size(f)]));
sizes.total = {
  minified: files.reduce((n, f) => n + sizes[f].minified, 0),
  gzipped: files.reduce((n, f) => n + sizes[f].gzipped, 0),
};
writeFileSync(`${out}/sizes.json`, `${JSON.stringify(sizes, null, 2)}\n`);
