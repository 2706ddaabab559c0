// Decoder comparison on frames.py's frames: jsQR, @zxing/library (ZXing's Java port)
// and zxing-wasm (ZXing-C++), time per 640x480 frame and decodes out of 30.
// The two others are not dependencies: install them beside it first, in js/scan:
//   npm install --no-save jsqr@1.4.0 @zxing/library@0.23.0 && node bench/decoders.mjs
// (from js/scan/bench after frames.py).
import { readFileSync } from "node:fs";
import jsQR from "jsqr";
import zx from "@zxing/library"; const { QRCodeReader, RGBLuminanceSource, BinaryBitmap, HybridBinarizer } = zx;
const frames = JSON.parse(readFileSync("frames.json", "utf8"));
const W = 640, H = 480, N = 30;
let wasm = null;
try { wasm = await import("zxing-wasm/reader"); await wasm.prepareZXingModule({ overrides: { wasmBinary: readFileSync(new URL("../node_modules/zxing-wasm/dist/reader/zxing_reader.wasm", import.meta.url)).buffer }, fireImmediately: true }); } catch (e) { console.log("zxing-wasm import failed", e.message); }
for (const [name, { text }] of Object.entries(frames)) {
  const rgba = new Uint8ClampedArray(readFileSync(`${name}.rgba`));
  const time = async (label, fn) => {
    let ok = 0; const t0 = performance.now();
    for (let i = 0; i < N; i++) if ((await fn()) === text) ok++;
    console.log(name, label, ((performance.now() - t0) / N).toFixed(1), "ms/frame", `${ok}/${N}`);
  };
  await time("jsqr", () => jsQR(rgba, W, H, { inversionAttempts: "dontInvert" })?.data);
  const lum = new Uint8ClampedArray(W * H); for (let i = 0; i < W * H; i++) lum[i] = rgba[i * 4];
  const reader = new QRCodeReader();
  await time("zxing-js", () => { try { return reader.decode(new BinaryBitmap(new HybridBinarizer(new RGBLuminanceSource(lum, W, H)))).getText(); } catch (e) { return null; } });
  if (wasm) await time("zxing-wasm", async () => (await wasm.readBarcodes({ data: rgba, width: W, height: H, colorSpace: "srgb" }, { formats: ["QRCode"], tryHarder: false }))[0]?.text);
}
