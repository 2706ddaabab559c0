// The demo e-card wallet: a device key in WebCrypto (non-extractable, kept in IndexedDB),
// activation with a one-time code or at a counter, refreshing QR tokens, the holder's own
// records, a loss report confirmed in the page.
//
// Activation at a counter: the page makes a device key first and shows its public half as
// a QR code (SSCA1:<x>.<y>, cardsvc/core/pairing.py) with a short fingerprint; the clerk
// scans it, the card's chip and PIN prove the holder, and the issuer binds the key. The
// page meanwhile asks GET /v1/ecards/device-binding with a device proof every few seconds:
// 404 until the key is bound, then the e-card, shown at once. A reload keeps waiting with
// the same key (it is kept in IndexedDB, marked pending).
//
// Two modes: standard shows the QR code, the records and the other actions one below the
// other; the mode for the elderly (<html data-mode="care">, remembered in a cookie the
// server reads) shows one screen at a time: the QR code with its purpose, the records, or
// "more" (report lost, remove), each reached by one clear button.
//
// Every e-card request carries a device proof (RFC 9449 shape) that the issuer checks in
// cardsvc/ecards/proofs.py: a compact JWS, header {typ: "dpop+jwt", alg: "ES256", jwk},
// claims {htm, htu, iat, nonce, jti}, signed by the device key. WebCrypto's ECDSA
// signature is already the raw r||s that JWS wants.
//
// Every word comes from the catalogue through I18N (i18n.js, loaded first): problems are
// put into words by their problem code (wallet.problem.*), the issuer's detail only as a
// last fallback.
"use strict";

(() => {
  const ISSUER = document.querySelector('meta[name="cardsvc-issuer"]').content;
  // How often a new QR token is fetched, in seconds (30; ?refresh= lowers it for demos).
  const REFRESH = Math.min(30, Math.max(2, parseInt(
    new URLSearchParams(location.search).get("refresh") || "30", 10) || 30));
  const RETRY_SECONDS = 5;
  // How often a wallet waiting for a counter asks whether its key is bound, in seconds.
  const COUNTER_POLL_SECONDS = 3;
  const ACTIVATION_PREFIX = "SSCA1:";

  const $ = (id) => document.getElementById(id);
  const ui = {
    message: $("message"), loading: $("loading"), form: $("activate"),
    citizenId: $("citizen-id"), code: $("code"), activateButton: $("activate-button"),
    ecard: $("ecard"), name: $("holder-name"), cardNumber: $("card-number"),
    status: $("card-status"), qrArea: $("qr-area"), purpose: $("purpose"), qr: $("qr"),
    countdown: $("countdown"), qrText: $("qr-text"), reportLost: $("report-lost"), forget: $("forget"),
    modeSwitch: $("mode-switch"), nextSteps: $("next-steps"), recordsStatus: $("records-status"),
    openList: $("open-list"), benefitList: $("benefit-list"), feeList: $("fee-list"),
    dialog: $("confirm"), dialogHeading: $("confirm-heading"), dialogText: $("confirm-text"),
    dialogYes: $("confirm-yes"), dialogNo: $("confirm-no"),
    counterStart: $("counter-start"), counterStartButton: $("counter-start-button"),
    counter: $("counter"), counterHeading: $("counter-heading"), counterQr: $("counter-qr"),
    counterFingerprint: $("counter-fingerprint"), counterText: $("counter-text"),
    counterStatus: $("counter-status"), counterCancel: $("counter-cancel"),
  };
  const root = document.documentElement;
  const MODE_COOKIE = "cardsvc_wallet_mode";

  // -- words ---------------------------------------------------------------------------

  class WalletError extends Error {
    constructor(message, { status = 0, code = "", reason = "" } = {}) {
      super(message);
      this.status = status;
      this.code = code;
      this.reason = reason;
    }
  }

  const t = (key, params) => I18N.t(key, params);
  const P = "wallet.problem.";

  function plainWords(status, code, problem) {
    const reason = problem.reason || "";
    switch (code) {
      case "activation-failed":
        if (reason === "wrong-code") {
          const left = problem.attempts_left;
          return t(left === 1 ? `${P}wrong-code.one` : `${P}wrong-code.other`, { left });
        }
        if (reason === "no-code") return t(`${P}no-code`);
        if (reason === "used") return t(`${P}used`);
        if (reason === "expired") return t(`${P}expired`);
        break;
      case "activation-locked":
      case "no-active-card":
      case "invalid-device-key":
      case "ecard-not-found":
      case "ecard-inactive":
      case "invalid-request":
        return t(P + code);
      case "invalid-device-proof":
        if (reason === "proof-signature" || reason === "proof-key") return t(`${P}device-moved`);
        if (reason === "proof-stale" || reason === "proof-nonce") return t(`${P}device-clock`);
        return t(`${P}invalid-device-proof`);
      case "illegal-transition":
        if (problem.state === "suspended") return t(`${P}illegal-transition.suspended`);
        return t(`${P}illegal-transition`, { state: problem.state || "" });
      case "http-413":
        return t(`${P}too-long`);
      default:
        break;
    }
    if (status === 429) return t(`${P}too-many`);
    if (status >= 500) return t(`${P}server`);
    // The issuer's own detail is English: shown only to a reader of English.
    if (!problem.detail || I18N.lang !== "en") return t(`${P}other`, { status });
    return t(`${P}other-detail`, { status, detail: String(problem.detail).replace(/\.$/, "") });
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
    else if (error instanceof TypeError) say(t("wallet.unreachable"));
    else say(t("wallet.went-wrong", { detail: error && error.message ? error.message : error }));
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

  async function fingerprintOf(jwk) {
    // Eight hex digits of the RFC 7638 thumbprint, as the counter shows them (XXXX-XXXX).
    const canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y });
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", utf8(canonical)));
    const hex = Array.from(digest.slice(0, 4), (b) => b.toString(16).padStart(2, "0"))
      .join("").toUpperCase();
    return `${hex.slice(0, 4)}-${hex.slice(4)}`;
  }

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
    if (ecard.card_status === "invalid") return "revoked";
    if (ecard.ecard_status === "invalid") return "replaced";
    if (ecard.card_status === "suspended" || ecard.ecard_status === "suspended") return "suspended";
    if (ecard.card_status !== "valid" || ecard.ecard_status !== "valid") return "invalid";
    return "active";
  }

  function showCard(ecard) {
    const key = statusOf(ecard);
    ui.name.textContent = ecard.holder_name;
    ui.cardNumber.textContent = ecard.card_number;
    ui.status.textContent = t(`wallet.status.${key}`);
    // "invalid" (neither valid nor a known end) is shown as revoked, as before.
    ui.status.dataset.status = key === "invalid" ? "revoked" : key;
    ui.reportLost.disabled = key !== "active";
    ui.qrArea.hidden = key !== "active";
    // After a loss report (or whenever the card is suspended): what to do next.
    ui.nextSteps.hidden = key !== "suspended";
    ui.form.hidden = true;
    hideCounter();
    ui.counterStart.hidden = true;
    const first = ui.ecard.hidden;
    ui.ecard.hidden = false;
    if (first) showView("card", false);
    if (key === "active") startQr();
    else stopQr();
    if (first) loadRecords();
  }

  function showActivation() {
    stopQr();
    closeDialog(false);
    ui.ecard.hidden = true;
    hideCounter();
    ui.form.hidden = false;
    ui.counterStart.hidden = false;
    ui.counterStartButton.disabled = false;
    ui.activateButton.disabled = false;
    ui.activateButton.textContent = t("wallet.activate.button");
  }

  // -- activation at a counter --------------------------------------------------------------

  let counterTimer = null;

  function hideCounter() {
    if (counterTimer !== null) clearTimeout(counterTimer);
    counterTimer = null;
    ui.counter.hidden = true;
  }

  async function showCounter() {
    const text = `${ACTIVATION_PREFIX}${wallet.jwk.x}.${wallet.jwk.y}`;
    stopQr();
    ui.ecard.hidden = true;
    ui.form.hidden = true;
    ui.counterStart.hidden = true;
    ui.counter.hidden = false;
    ui.counterQr.dataset.text = text;
    ui.counterQr.onload = () => { ui.counterQr.hidden = false; };
    ui.counterQr.src = `/wallet/activation-qr.svg?text=${encodeURIComponent(text)}`;
    ui.counterText.value = text;
    ui.counterFingerprint.textContent = await fingerprintOf(wallet.jwk);
    waiting(t("wallet.counter.waiting"), "waiting");
    ui.counterHeading.focus();
    askCounter();
  }

  function waiting(words, state) {
    ui.counterStatus.textContent = words;
    ui.counterStatus.dataset.state = state;
  }

  async function askCounter() {
    counterTimer = null;
    if (!wallet || !wallet.pending || ui.counter.hidden) return;
    try {
      const response = await proven(wallet, "GET", "/v1/ecards/device-binding");
      const ecard = await response.json();
      wallet = { privateKey: wallet.privateKey, jwk: wallet.jwk, ecardId: ecard.ecard_id };
      await saveWallet(wallet);
      say(t("wallet.counter.activated"), "info");
      showCard(ecard);
      return;
    } catch (error) {
      // Not bound yet is the usual answer; anything else is said and asked again.
      if (error instanceof WalletError && error.code === "ecard-not-found") {
        waiting(t("wallet.counter.waiting"), "waiting");
      } else {
        const words = error instanceof WalletError ? error.message
          : error instanceof TypeError ? t("wallet.unreachable") : String(error);
        waiting(t("wallet.counter.retrying", { detail: words }), "failed");
      }
    }
    if (!ui.counter.hidden) counterTimer = setTimeout(askCounter, COUNTER_POLL_SECONDS * 1000);
  }

  async function startCounter() {
    say("");
    ui.counterStartButton.disabled = true;
    try {
      const key = await newDeviceKey();
      wallet = { privateKey: key.privateKey, jwk: key.jwk, pending: true };
      await saveWallet(wallet);
      await showCounter();
    } catch (error) {
      sayError(error);
      ui.counterStartButton.disabled = false;
    }
  }

  async function cancelCounter() {
    // The key was never bound: forgotten, and the holder can choose again.
    hideCounter();
    await clearWallet();
    wallet = null;
    say("");
    showActivation();
    ui.counterStartButton.focus();
  }

  // -- screens and the mode for the elderly -----------------------------------------------

  const VIEWS = { card: "card-view", records: "records", more: "more" };
  let view = "card";

  const care = () => root.dataset.mode === "care";

  function layout() {
    // Standard: every part below the other, no step buttons. Care: one screen at a time.
    for (const [name, id] of Object.entries(VIEWS)) $(id).hidden = care() && name !== view;
    for (const steps of ui.ecard.querySelectorAll(".steps")) steps.hidden = !care();
    ui.ecard.dataset.view = view;
    ui.modeSwitch.setAttribute("aria-pressed", String(care()));
  }

  function showView(name, focus = true) {
    if (name !== view && ui.message.dataset.kind === "info") say(""); // said on the last screen
    view = name;
    layout();
    if (name === "records") loadRecords();
    if (focus && care()) {
      const heading = $(VIEWS[name]).querySelector("h2");
      heading.focus();
      heading.scrollIntoView({ block: "start" });
    }
  }

  function toggleMode() {
    const next = care() ? "standard" : "care";
    root.dataset.mode = next;
    // Remembered by this browser (a year); the server renders the page in it next time.
    document.cookie = `${MODE_COOKIE}=${next}; path=/; max-age=31536000; SameSite=Strict`;
    layout();
  }

  // -- a confirmation in the page (a modal <dialog>: focus inside, Escape cancels) -----------

  let answer = null; // resolves the open confirmation
  let opener = null;

  function confirmInPage(prefix) {
    closeDialog(false);
    ui.dialogHeading.textContent = t(`${prefix}.heading`);
    ui.dialogText.textContent = t(prefix);
    ui.dialogYes.textContent = t(`${prefix}.yes`);
    opener = document.activeElement;
    ui.dialog.showModal();
    ui.dialogNo.focus(); // the safe answer first
    return new Promise((resolve) => { answer = resolve; });
  }

  function closeDialog(yes) {
    if (ui.dialog.open) ui.dialog.close();
    if (answer === null) return;
    const resolve = answer;
    answer = null;
    if (opener && document.contains(opener) && !opener.hidden) opener.focus();
    opener = null;
    resolve(yes);
  }

  // -- the holder's own records --------------------------------------------------------------

  const PAGES = 10; // at most 10 x 50 rows of each kind

  async function everything(path) {
    const items = [];
    let cursor = null;
    for (let page = 0; page < PAGES; page += 1) {
      const query = cursor ? `?limit=50&cursor=${encodeURIComponent(cursor)}` : "?limit=50";
      // htu is the URL without the query: the proof signs the path.
      const headers = { DPoP: await deviceProof(wallet, "GET", path) };
      const response = await fetch(path + query, { headers, cache: "no-store" });
      if (!response.ok) throw await problemOf(response);
      const body = await response.json();
      items.push(...body.items);
      cursor = body.next_cursor;
      if (!cursor) break;
    }
    return items;
  }

  function row(what, amountFen, when, note) {
    const item = document.createElement("li");
    const parts = [["what", what], ["amount", I18N.money(amountFen)], ["when", when], ["note", note]];
    for (const [kind, words] of parts) {
      if (!words) continue;
      const span = document.createElement("span");
      span.className = kind;
      span.textContent = words;
      if (item.childNodes.length) item.append(" "); // read apart, laid out by the grid
      item.append(span);
    }
    return item;
  }

  function fill(list, rows, emptyKey) {
    list.replaceChildren(...rows);
    if (rows.length === 0) {
      const item = document.createElement("li");
      item.className = "empty";
      item.textContent = t(emptyKey);
      list.append(item);
    }
    list.dataset.count = String(rows.length);
  }

  let reading = null;

  function loadRecords() {
    if (!wallet || reading) return reading;
    reading = readRecords().finally(() => { reading = null; });
    return reading;
  }

  async function readRecords() {
    ui.recordsStatus.textContent = t("wallet.records.loading");
    ui.recordsStatus.dataset.state = "loading";
    const base = `/v1/ecards/${wallet.ecardId}`;
    try {
      const entitlements = await everything(`${base}/entitlements`);
      const transactions = await everything(`${base}/transactions`);
      const byId = new Map(entitlements.map((e) => [e.id, e]));
      // Newest first; at the same time, the later period first.
      const order = (tx) => `${tx.at}|${(byId.get(tx.entitlement_id) || {}).period || ""}`;
      const newest = (a, b) => (order(a) < order(b) ? 1 : -1);
      fill(ui.openList, entitlements
        .filter((e) => e.state === "open")
        .sort((a, b) => (a.period < b.period ? 1 : -1))
        .map((e) => row(I18N.benefit(e.benefit, e.period), e.amount_fen, "",
          t("wallet.records.collect-at"))), "wallet.records.none-open");
      const held = (tx) => (tx.state === "conflict" ? t("wallet.records.conflict") : "");
      fill(ui.benefitList, transactions.filter((tx) => tx.type === "benefit").sort(newest)
        .map((tx) => {
          const e = byId.get(tx.entitlement_id);
          const what = e ? I18N.benefit(e.benefit, e.period) : t("wallet.records.benefit-unknown");
          return row(what, tx.amount_fen, I18N.beijing(tx.at), held(tx));
        }), "wallet.records.none-benefit");
      fill(ui.feeList, transactions.filter((tx) => tx.type === "fee").sort(newest)
        .map((tx) => row(t("wallet.records.fee"), tx.amount_fen, I18N.beijing(tx.at), held(tx))),
      "wallet.records.none-fee");
      ui.recordsStatus.textContent = t("wallet.records.ready");
      ui.recordsStatus.dataset.state = "ready";
    } catch (error) {
      const words = error instanceof WalletError ? error.message
        : error instanceof TypeError ? t("wallet.unreachable") : String(error);
      ui.recordsStatus.textContent = t("wallet.records.failed", { detail: words });
      ui.recordsStatus.dataset.state = "failed";
    }
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
    if (ui.qrText) ui.qrText.value = "";
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
    ui.countdown.textContent = t("wallet.qr.countdown", { seconds: left });
    ui.countdown.dataset.seconds = String(left);
  }

  async function refreshQr() {
    fetching = true;
    ui.countdown.textContent = t("wallet.qr.fetching");
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
      if (ui.qrText) ui.qrText.value = ui.qr.dataset.token;
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
      say(t("wallet.enter-both"));
      return;
    }
    ui.activateButton.disabled = true;
    ui.activateButton.textContent = t("wallet.activate.busy");
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
      say(t("wallet.activated"), "info");
      showCard(ecard);
    } catch (error) {
      sayError(error);
      ui.activateButton.disabled = false;
      ui.activateButton.textContent = t("wallet.activate.button");
    }
  }

  async function reportLost() {
    if (!(await confirmInPage("wallet.confirm.report-lost"))) {
      return;
    }
    ui.reportLost.disabled = true;
    try {
      const response = await proven(wallet, "POST", `/v1/ecards/${wallet.ecardId}/loss-report`, {});
      showCard(await response.json());
      // The card screen says what to do next (the service hall, the hotline).
      showView("card", false);
      say(t("wallet.reported-lost"), "info");
      ui.nextSteps.querySelector("h2").focus();
    } catch (error) {
      sayError(error);
      await reloadCard();
    }
  }

  async function forget() {
    if (!(await confirmInPage("wallet.confirm.forget"))) {
      return;
    }
    await clearWallet();
    wallet = null;
    say("");
    showActivation();
  }

  async function start() {
    ui.form.addEventListener("submit", activate);
    ui.counterStartButton.addEventListener("click", startCounter);
    ui.counterCancel.addEventListener("click", cancelCounter);
    ui.reportLost.addEventListener("click", reportLost);
    ui.forget.addEventListener("click", forget);
    ui.purpose.addEventListener("change", () => { dueAt = 0; });
    ui.modeSwitch.addEventListener("click", toggleMode);
    for (const button of document.querySelectorAll("[data-view-to]")) {
      button.addEventListener("click", () => showView(button.dataset.viewTo));
    }
    ui.dialogYes.addEventListener("click", () => closeDialog(true));
    ui.dialogNo.addEventListener("click", () => closeDialog(false));
    // Escape (the dialog's cancel) and any other close answer "no".
    ui.dialog.addEventListener("close", () => closeDialog(false));
    layout();
    if (!window.isSecureContext || !window.crypto || !crypto.subtle || !window.indexedDB) {
      ui.loading.hidden = true;
      say(t("wallet.insecure"));
      return;
    }
    try {
      wallet = (await loadWallet()) || null;
    } catch (error) {
      wallet = null;
      say(t("wallet.no-storage"));
    }
    ui.loading.hidden = true;
    if (wallet && wallet.ecardId) await reloadCard();
    else if (wallet && wallet.pending) await showCounter();
    else showActivation();
  }

  I18N.ready.then(start);
})();
