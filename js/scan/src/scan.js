// The scanner page (/scan): a phone or tablet camera reads e-card QR codes and the page
// verifies them itself, offline, with @cardsvc/verify against the root key pinned on the
// first visit and the newest verifier bundle kept in IndexedDB. The purpose is chosen
// once; each verdict is one large word (有效 / 无效 / 无法确认), the reason from the
// catalogue by the verifier's check name, and only what the purpose discloses.
//
// Built by js/scan/build.mjs: the QR decoder (zxing-wasm's reader) is bundled in; its
// WebAssembly and the verifier are files beside this one, all cached by the service
// worker (/scan/sw.js) so the page opens with no network.
import {
  Attribute,
  IndexedDbStore,
  OfflineVerifier,
  PURPOSE_ATTRIBUTES,
  VerificationError,
  VerifyingKey,
  purposeFromName,
  verdictToJson,
} from "./cardsvc-verify.min.js";
import { prepareZXingModule, readBarcodes } from "zxing-wasm/reader";

const $ = (id) => document.getElementById(id);
const config = (name) => document.querySelector(`meta[name="cardsvc-${name}"]`).content;
const t = (key, params) => I18N.t(key, params);

const BUNDLE_URL = config("bundle");
const REFRESH_SECONDS = 60;
const FRAME_MS = 120;
const PURPOSE_KEY = "cardsvc-scan-purpose";
const ROOT_NAME = "pinned-root";
const ATTRIBUTE_NAMES = Object.fromEntries(Object.entries(Attribute).map(([k, v]) => [v, k.toLowerCase()]));

const ui = {
  message: $("message"), setup: $("setup"), purpose: $("purpose"), start: $("start"),
  scanner: $("scanner"), purposeLine: $("purpose-line"), chosen: $("chosen-purpose"), change: $("change-purpose"),
  video: $("camera"), hint: $("hint"), verdict: $("verdict"), word: $("verdict-word"),
  reason: $("verdict-reason"), claims: $("verdict-claims"), next: $("next"),
  bundle: $("bundle"), age: $("bundle-age"), network: $("bundle-network"), update: $("update"),
};

let gate = null;
let purpose = null;
let stream = null;
let scanning = false;
let updating = null;
let lastUpdate = null; // {at, outcome}

function say(text) {
  ui.message.textContent = text || "";
  ui.message.hidden = !text;
}

// -- the pinned root and the verifier -----------------------------------------------------

async function openGate(store) {
  // The root key comes with the page (the issuer's trust root). The first one seen is
  // pinned in IndexedDB; a page that later brings another root is refused, so neither
  // a changed page nor a cached one can swap the anchor the bundles are checked against.
  const offered = await VerifyingKey.fromJwk(JSON.parse(config("root")));
  const kept = await store.get(ROOT_NAME);
  let root = offered;
  if (kept === null) {
    const { kty, crv, x, y } = JSON.parse(config("root"));
    await store.set(ROOT_NAME, JSON.stringify({ kty, crv, x, y }));
  } else {
    root = await VerifyingKey.fromJwk(JSON.parse(kept));
    if (root.kid !== offered.kid) {
      const error = new Error("root-changed");
      error.check = "root-changed";
      throw error;
    }
  }
  return OfflineVerifier.open(root, { store });
}

// -- the bundle ---------------------------------------------------------------------------

async function fetchBundle(since) {
  const url = since === null ? BUNDLE_URL : `${BUNDLE_URL}?since=${since}&delta=entries`;
  const response = await fetch(url, { cache: "no-store" });
  if (response.status === 304) return null;
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return response.text();
}

async function refreshBundle() {
  if (updating) return updating;
  updating = (async () => {
    let outcome = "unchanged";
    try {
      const since = gate.deltaBase;
      const token = await fetchBundle(since);
      if (token !== null) {
        try {
          await gate.update(token);
        } catch (error) {
          // A delta that does not apply to the held bundle: the full one instead.
          if (since === null || !(error instanceof VerificationError)) throw error;
          await gate.update(await fetchBundle(null));
        }
        outcome = "updated";
      }
    } catch (error) {
      outcome = error instanceof VerificationError ? "refused" : "offline";
      if (outcome === "refused") console.warn("bundle refused", error.check, error.detail);
    }
    lastUpdate = { at: Date.now(), outcome };
    ui.bundle.dataset.refreshes = String(Number(ui.bundle.dataset.refreshes || "0") + 1);
    showBundle();
  })().finally(() => { updating = null; });
  return updating;
}

function ageWords(seconds) {
  if (seconds < 60) return t("scan.age.just-now");
  if (seconds < 3600) return t("scan.age.minutes", { n: Math.floor(seconds / 60) });
  if (seconds < 172800) return t("scan.age.hours", { n: Math.floor(seconds / 3600) });
  return t("scan.age.days", { n: Math.floor(seconds / 86400) });
}

function showBundle() {
  const age = gate ? gate.bundleAge() : null;
  ui.bundle.dataset.version = gate && gate.bundle ? String(gate.bundle.version) : "";
  if (age === null) {
    ui.age.textContent = t("scan.bundle.none");
    ui.bundle.dataset.ageSeconds = "";
  } else {
    const seconds = Math.max(0, Math.trunc(age));
    ui.bundle.dataset.ageSeconds = String(seconds);
    ui.age.textContent = t("scan.bundle.age", { age: ageWords(seconds) });
    ui.bundle.dataset.stale = String(seconds > gate.maxAge);
  }
  const state = lastUpdate ? lastUpdate.outcome : "checking";
  ui.bundle.dataset.network = state;
  ui.network.textContent = t(`scan.network.${state}`);
}

// -- the camera and the decoder -----------------------------------------------------------

const canvas = document.createElement("canvas");
const context = canvas.getContext("2d", { willReadFrequently: true });

async function startCamera() {
  ui.verdict.hidden = true;
  ui.scanner.hidden = false;
  ui.hint.textContent = t("scan.hint.starting");
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      video: { facingMode: "environment", width: { ideal: 1280 }, height: { ideal: 720 } },
      audio: false,
    });
  } catch (error) {
    ui.hint.textContent = "";
    say(t(error && error.name === "NotAllowedError" ? "scan.camera.denied" : "scan.camera.none"));
    return;
  }
  say("");
  ui.video.srcObject = stream;
  await ui.video.play().catch(() => undefined);
  ui.hint.textContent = t("scan.hint.aim");
  scanning = true;
  ui.scanner.dataset.scanning = "1";
  setTimeout(scanFrame, FRAME_MS);
}

function stopCamera() {
  scanning = false;
  ui.scanner.dataset.scanning = "0";
  if (stream) for (const track of stream.getTracks()) track.stop();
  stream = null;
  ui.video.srcObject = null;
}

async function scanFrame() {
  if (!scanning) return;
  const { videoWidth: width, videoHeight: height } = ui.video;
  if (width && height) {
    canvas.width = width;
    canvas.height = height;
    context.drawImage(ui.video, 0, 0, width, height);
    const started = performance.now();
    let found = [];
    try {
      found = await readBarcodes(context.getImageData(0, 0, width, height),
        { formats: ["QRCode"], maxNumberOfSymbols: 1, tryHarder: true });
    } catch (error) {
      console.warn("decoder", error);
    }
    const text = found.length && found[0].isValid ? found[0].text : "";
    if (text && scanning) {
      stopCamera();
      await check(text, performance.now() - started);
      return;
    }
  }
  if (scanning) setTimeout(scanFrame, FRAME_MS);
}

// -- the verdict --------------------------------------------------------------------------

const WORDS = { valid: "scan.verdict.valid", invalid: "scan.verdict.invalid", "status-unknown": "scan.verdict.unknown" };

function reasonWords(reason) {
  const key = `scan.reason.${reason}`;
  return I18N.has(key) ? t(key) : t("scan.reason.other", { check: reason });
}

function valueWords(name, value) {
  if (name === "concession") return I18N.has(`scan.concession.${value}`) ? t(`scan.concession.${value}`) : String(value);
  if (name === "concession_until") return I18N.date(String(value));
  if (name === "age_over") return t("scan.age-over", { n: value });
  return String(value);
}

function showClaims(verdict) {
  ui.claims.replaceChildren();
  if (verdict.outcome === "invalid") return;
  // Only what this purpose discloses, whatever else a token might carry.
  const claims = verdictToJson(verdict).claims;
  for (const attribute of PURPOSE_ATTRIBUTES[purpose]) {
    const name = ATTRIBUTE_NAMES[attribute];
    if (!(name in claims)) continue;
    const term = document.createElement("dt");
    term.textContent = t(`counter.qr.attribute.${name}`);
    const value = document.createElement("dd");
    value.textContent = valueWords(name, claims[name]);
    value.dataset.attribute = name;
    ui.claims.append(term, value);
  }
}

async function check(text, decodeMs) {
  const started = performance.now();
  const verdict = await gate.verify(text, { purpose });
  const verifyMs = performance.now() - started;
  ui.scanner.hidden = true;
  ui.verdict.hidden = false;
  ui.verdict.dataset.outcome = verdict.outcome;
  ui.verdict.dataset.reason = verdict.reason || "";
  ui.verdict.dataset.decodeMs = decodeMs.toFixed(1);
  ui.verdict.dataset.verifyMs = verifyMs.toFixed(1);
  ui.verdict.dataset.count = String(Number(ui.verdict.dataset.count || "0") + 1);
  ui.word.textContent = t(WORDS[verdict.outcome]);
  ui.reason.textContent = verdict.outcome === "valid"
    ? t("scan.reason.valid", { purpose: t(`purpose.${ui.purpose.value}`) })
    : reasonWords(verdict.reason);
  showClaims(verdict);
  showBundle();
  ui.next.focus();
}

// -- the purpose, chosen once -------------------------------------------------------------

function choose(name) {
  purpose = purposeFromName(name);
  ui.purpose.value = name;
  ui.chosen.textContent = t(`purpose.${name}`);
  ui.chosen.dataset.purpose = name;
  ui.setup.hidden = true;
  ui.purposeLine.hidden = false;
  try { localStorage.setItem(PURPOSE_KEY, name); } catch (_) { /* private mode: asked again */ }
  startCamera();
}

function changePurpose() {
  stopCamera();
  ui.scanner.hidden = true;
  ui.verdict.hidden = true;
  ui.setup.hidden = false;
  ui.purposeLine.hidden = true;
  try { localStorage.removeItem(PURPOSE_KEY); } catch (_) { /* nothing kept */ }
  ui.purpose.focus();
}

// -- start --------------------------------------------------------------------------------

async function start() {
  if (!window.isSecureContext || !crypto.subtle || !window.indexedDB || !navigator.mediaDevices) {
    say(t("scan.insecure"));
    return;
  }
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/scan/sw.js", { scope: "/scan" })
      .then(() => { document.body.dataset.offlineReady = "1"; })
      .catch((error) => console.warn("service worker", error));
  }
  prepareZXingModule({ overrides: { locateFile: (file) => `/scan/${file}` }, fireImmediately: true });
  try {
    gate = await openGate(new IndexedDbStore("cardsvc-scan"));
  } catch (error) {
    say(t(error && error.check === "root-changed" ? "scan.root-changed" : "scan.no-storage"));
    document.body.dataset.ready = "refused";
    return;
  }
  showBundle();
  ui.start.addEventListener("click", () => choose(ui.purpose.value));
  ui.change.addEventListener("click", changePurpose);
  ui.next.addEventListener("click", startCamera);
  ui.update.addEventListener("click", () => refreshBundle());
  window.addEventListener("online", () => refreshBundle());
  setInterval(() => refreshBundle(), REFRESH_SECONDS * 1000);
  setInterval(showBundle, 5000);
  await refreshBundle();
  document.body.dataset.ready = "1";
  let kept = null;
  try { kept = localStorage.getItem(PURPOSE_KEY); } catch (_) { kept = null; }
  if (kept && purposeFromName(kept) !== undefined) choose(kept);
  else {
    ui.setup.hidden = false;
    ui.purpose.focus();
  }
}

I18N.ready.then(start);
