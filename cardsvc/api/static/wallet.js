// The demo e-card wallet: a device key in WebCrypto (non-extractable, kept in IndexedDB),
// activation with a one-time code, refreshing QR tokens, a loss report.
//
// Every e-card request carries a device proof (RFC 9449 shape) that the issuer checks in
// cardsvc/ecards/proofs.py: a compact JWS, header {typ: "dpop+jwt", alg: "ES256", jwk},
// claims {htm, htu, iat, nonce, jti}, signed by the device key. WebCrypto's ECDSA
// signature is already the raw r||s that JWS wants.
"use strict";

(() => {
  const ISSUER = document.querySelector('meta[name="cardsvc-issuer"]').content;
  // How often a new QR token is fetched, in seconds (30; ?refresh= lowers it for demos).
  const REFRESH = Math.min(30, Math.max(2, parseInt(
    new URLSearchParams(location.search).get("refresh") || "30", 10) || 30));
  const RETRY_SECONDS = 5;

  const $ = (id) => document.getElementById(id);
  const ui = {
    message: $("message"), loading: $("loading"), form: $("activate"),
    citizenId: $("citizen-id"), code: $("code"), activateButton: $("activate-button"),
    ecard: $("ecard"), name: $("holder-name"), cardNumber: $("card-number"),
    status: $("card-status"), qrArea: $("qr-area"), purpose: $("purpose"), qr: $("qr"),
    countdown: $("countdown"), qrText: $("qr-text"), reportLost: $("report-lost"), forget: $("forget"),
  };

  // -- words ---------------------------------------------------------------------------

  class WalletError extends Error {
    constructor(message, { status = 0, code = "", reason = "" } = {}) {
      super(message);
      this.status = status;
      this.code = code;
      this.reason = reason;
    }
  }

  function plainWords(status, code, problem) {
    const reason = problem.reason || "";
    switch (code) {
      case "activation-failed":
        if (reason === "wrong-code") {
          const left = problem.attempts_left;
          return `That activation code is not right. You can try ${left} more ` +
            `${left === 1 ? "time" : "times"} before it locks.`;
        }
        if (reason === "no-code") {
          return "No activation code was issued for this ID number. Check the number, " +
            "or ask a counter for a code.";
        }
        if (reason === "used") return "This activation code was already used. Ask a counter for a new one.";
        if (reason === "expired") return "This activation code has expired. Ask a counter for a new one.";
        break;
      case "activation-locked":
        return "Too many wrong codes: this activation code is locked. Ask a counter for a new one.";
      case "no-active-card":
        return "There is no active card for this ID number, so no e-card can be activated.";
      case "invalid-device-key":
        return "This browser's key was not accepted. Remove the e-card from this browser and activate again.";
      case "invalid-device-proof":
        if (reason === "proof-signature" || reason === "proof-key") {
          return "This e-card now belongs to another device. Activate again to use it here.";
        }
        if (reason === "proof-stale" || reason === "proof-nonce") {
          return "This device's clock seems wrong. Set the correct time and try again.";
        }
        return "The service did not accept this device's signature. Please try again.";
      case "ecard-not-found":
        return "This e-card no longer exists. Activate again.";
      case "ecard-inactive":
        return "Your card is suspended or no longer valid, so no QR code can be shown.";
      case "illegal-transition":
        return `The card cannot be reported lost now: ${problem.state === "suspended"
          ? "it is already suspended" : `it is ${problem.state}`}.`;
      case "invalid-request":
        return "Please check what you entered.";
      case "http-413":
        return "What you entered is too long.";
      default:
        break;
    }
    if (status === 429) return "Too many attempts. Wait a minute and try again.";
    if (status >= 500) return "The service has a problem right now. Please try again later.";
    const detail = problem.detail ? String(problem.detail) : `the request failed (HTTP ${status})`;
    return detail.charAt(0).toUpperCase() + detail.slice(1) + ".";
  }

  async function problemOf(response) {
    let problem = {};
    try {
      problem = await response.json();
    } catch (_) {
      problem = {};
    }
    const code = String(problem.type || "").split("/").pop();
    return new WalletError(plainWords(response.status, code, problem),
      { status: response.status, code, reason: problem.reason });
  }

  function say(text, kind = "error") {
    ui.message.textContent = text || "";
    ui.message.className = kind === "info" ? "message info" : "message";
    ui.message.dataset.kind = kind;
    ui.message.hidden = !text;
  }

  function sayError(error) {
    if (error instanceof WalletError) say(error.message);
    else if (error instanceof TypeError) say("Cannot reach the service. Check the connection and try again.");
    else say(`Something went wrong: ${error && error.message ? error.message : error}`);
  }

  // -- the device key, kept in IndexedDB ------------------------------------------------

  const DB_NAME = "cardsvc-wallet";
  const STORE = "wallet";
  const SLOT = "current";

  function store(mode, act) {
    return new Promise((resolve, reject) => {
      const opening = indexedDB.open(DB_NAME, 1);
      opening.onupgradeneeded = () => opening.result.createObjectStore(STORE);
      opening.onerror = () => reject(opening.error);
      opening.onsuccess = () => {
        const db = opening.result;
        const request = act(db.transaction(STORE, mode).objectStore(STORE));
        request.onsuccess = () => { db.close(); resolve(request.result); };
        request.onerror = () => { db.close(); reject(request.error); };
      };
    });
  }
  const loadWallet = () => store("readonly", (s) => s.get(SLOT));
  const saveWallet = (value) => store("readwrite", (s) => s.put(value, SLOT));
  const clearWallet = () => store("readwrite", (s) => s.delete(SLOT));

  async function newDeviceKey() {
    // Non-extractable: the private key can sign here but can never be read out.
    const pair = await crypto.subtle.generateKey(
      { name: "ECDSA", namedCurve: "P-256" }, false, ["sign", "verify"]);
    const full = await crypto.subtle.exportKey("jwk", pair.publicKey);
    return { privateKey: pair.privateKey, jwk: { kty: full.kty, crv: full.crv, x: full.x, y: full.y } };
  }

  // -- device proofs ----------------------------------------------------------------------

  const utf8 = (text) => new TextEncoder().encode(text);
  function b64url(bytes) {
    let binary = "";
    for (const byte of new Uint8Array(bytes)) binary += String.fromCharCode(byte);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  let skewSeconds = 0; // server clock minus ours, when ours is clearly off

  function noteServerTime(response) {
    const date = Date.parse(response.headers.get("Date") || "");
    if (Number.isNaN(date)) return;
    const skew = (date - Date.now()) / 1000;
    skewSeconds = Math.abs(skew) > 5 ? Math.round(skew) : 0;
  }

  async function deviceProof(wallet, method, path) {
    const answer = await fetch("/v1/ecards/nonce", { cache: "no-store" });
    if (!answer.ok) throw await problemOf(answer);
    noteServerTime(answer);
    const { nonce } = await answer.json();
    const header = { typ: "dpop+jwt", alg: "ES256", jwk: wallet.jwk };
    const claims = {
      htm: method,
      htu: ISSUER + path,
      iat: Math.floor(Date.now() / 1000) + skewSeconds,
      nonce,
      jti: b64url(crypto.getRandomValues(new Uint8Array(16))),
    };
    const input = `${b64url(utf8(JSON.stringify(header)))}.${b64url(utf8(JSON.stringify(claims)))}`;
    const signature = await crypto.subtle.sign(
      { name: "ECDSA", hash: "SHA-256" }, wallet.privateKey, utf8(input));
    return `${input}.${b64url(signature)}`;
  }

  async function proven(wallet, method, path, body) {
    const headers = { DPoP: await deviceProof(wallet, method, path) };
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    if (!response.ok) throw await problemOf(response);
    return response;
  }

  // -- the e-card -------------------------------------------------------------------------

  let wallet = null; // {privateKey, jwk, ecardId}

  function statusOf(ecard) {
    // The e-card follows its card: a suspended card suspends the e-card too.
    if (ecard.card_status === "invalid") return ["revoked", "Not valid (card revoked or expired)"];
    if (ecard.ecard_status === "invalid") return ["replaced", "No longer valid (replaced or ended)"];
    if (ecard.card_status === "suspended" || ecard.ecard_status === "suspended") {
      return ["suspended", "Suspended (reported lost)"];
    }
    if (ecard.card_status !== "valid" || ecard.ecard_status !== "valid") return ["revoked", "Not valid"];
    return ["active", "Active"];
  }

  function showCard(ecard) {
    const [key, words] = statusOf(ecard);
    ui.name.textContent = ecard.holder_name;
    ui.cardNumber.textContent = ecard.card_number;
    ui.status.textContent = words;
    ui.status.dataset.status = key;
    ui.reportLost.disabled = key !== "active";
    ui.qrArea.hidden = key !== "active";
    ui.form.hidden = true;
    ui.ecard.hidden = false;
    if (key === "active") startQr();
    else stopQr();
  }

  function showActivation() {
    stopQr();
    ui.ecard.hidden = true;
    ui.form.hidden = false;
    ui.activateButton.disabled = false;
    ui.activateButton.textContent = "Activate";
  }

  // -- QR tokens --------------------------------------------------------------------------

  let ticker = null;
  let dueAt = 0;
  let fetching = false;

  function startQr() {
    if (ticker !== null) return;
    dueAt = 0;
    ticker = setInterval(tick, 250);
    tick();
  }

  function stopQr() {
    if (ticker !== null) clearInterval(ticker);
    ticker = null;
    ui.qr.hidden = true;
    ui.qrText.value = "";
    ui.countdown.textContent = "";
    ui.countdown.dataset.seconds = "";
  }

  function tick() {
    if (fetching) return;
    const left = Math.max(0, Math.ceil((dueAt - Date.now()) / 1000));
    if (left === 0) refreshQr();
    else showCountdown(left);
  }

  function showCountdown(left) {
    ui.countdown.textContent = `New code in ${left} s`;
    ui.countdown.dataset.seconds = String(left);
  }

  async function refreshQr() {
    fetching = true;
    ui.countdown.textContent = "Getting a new code…";
    try {
      const purpose = ui.purpose.value;
      const response = await proven(wallet, "POST", `/v1/ecards/${wallet.ecardId}/tokens`,
        { purpose, format: "svg" });
      const image = await response.blob();
      if (ticker === null) return; // stopped meanwhile
      const old = ui.qr.src;
      ui.qr.src = URL.createObjectURL(image);
      if (old.startsWith("blob:")) URL.revokeObjectURL(old);
      ui.qr.dataset.token = decodeURIComponent(response.headers.get("X-Token-Text") || "");
      // For a counter without a scanner: the same text, to copy into its QR field.
      ui.qrText.value = ui.qr.dataset.token;
      ui.qr.dataset.purpose = purpose;
      // A purpose picked while this code was being fetched gets its own code at once.
      dueAt = ui.purpose.value === purpose ? Date.now() + REFRESH * 1000 : 0;
      showCountdown(REFRESH);
      ui.qr.hidden = false;
      ui.qr.dataset.refreshes = String(Number(ui.qr.dataset.refreshes) + 1);
      if (ui.message.dataset.kind === "qr") say("");
    } catch (error) {
      ui.qr.hidden = true;
      sayError(error);
      ui.message.dataset.kind = "qr";
      dueAt = Date.now() + RETRY_SECONDS * 1000;
      if (error instanceof WalletError && error.status !== 0 && error.status < 500) {
        await reloadCard(); // the card may have changed (suspended elsewhere, replaced)
      }
    } finally {
      fetching = false;
    }
  }

  async function reloadCard() {
    try {
      const response = await proven(wallet, "GET", `/v1/ecards/${wallet.ecardId}`);
      showCard(await response.json());
    } catch (error) {
      sayError(error);
      if (error instanceof WalletError && ["ecard-not-found", "invalid-device-proof"].includes(error.code)) {
        showActivation();
      }
    }
  }

  // -- actions ----------------------------------------------------------------------------

  async function activate(event) {
    event.preventDefault();
    say("");
    const citizenId = ui.citizenId.value.trim().toUpperCase();
    const code = ui.code.value.trim();
    if (!citizenId || !code) {
      say("Enter your ID number and the activation code.");
      return;
    }
    ui.activateButton.disabled = true;
    ui.activateButton.textContent = "Activating…";
    try {
      const key = await newDeviceKey();
      const response = await fetch("/v1/ecards/activations", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ citizen_id: citizenId, code, device_jwk: key.jwk }),
      });
      if (!response.ok) throw await problemOf(response);
      const ecard = await response.json();
      wallet = { privateKey: key.privateKey, jwk: key.jwk, ecardId: ecard.ecard_id };
      await saveWallet(wallet);
      ui.code.value = "";
      say("Your e-card is active on this device.", "info");
      showCard(ecard);
    } catch (error) {
      sayError(error);
      ui.activateButton.disabled = false;
      ui.activateButton.textContent = "Activate";
    }
  }

  async function reportLost() {
    if (!window.confirm("Report your card lost? The card and this e-card stop working until a counter resumes the card.")) {
      return;
    }
    ui.reportLost.disabled = true;
    try {
      const response = await proven(wallet, "POST", `/v1/ecards/${wallet.ecardId}/loss-report`, {});
      showCard(await response.json());
      say("Your card is reported lost and suspended: nobody can use it or this e-card. " +
        "If you find it, a counter can resume it.", "info");
    } catch (error) {
      sayError(error);
      await reloadCard();
    }
  }

  async function forget() {
    if (!window.confirm("Remove the e-card from this browser? You will need a new activation code.")) {
      return;
    }
    await clearWallet();
    wallet = null;
    say("");
    showActivation();
  }

  async function start() {
    ui.form.addEventListener("submit", activate);
    ui.reportLost.addEventListener("click", reportLost);
    ui.forget.addEventListener("click", forget);
    ui.purpose.addEventListener("change", () => { dueAt = 0; });
    if (!window.isSecureContext || !window.crypto || !crypto.subtle || !window.indexedDB) {
      ui.loading.hidden = true;
      say("This browser cannot keep a device key here. Open the page over HTTPS " +
        "(or at localhost on this computer) in an up-to-date browser.");
      return;
    }
    try {
      wallet = (await loadWallet()) || null;
    } catch (error) {
      wallet = null;
      say("This browser does not let the page store the device key (private mode?).");
    }
    ui.loading.hidden = true;
    if (wallet && wallet.ecardId) await reloadCard();
    else showActivation();
  }

  start();
})();
