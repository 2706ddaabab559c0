// The counter page: state arrives over Server-Sent Events (/api/events) as whole
// snapshots; actions are JSON POSTs carrying the page's CSRF token. The PIN and the
// clerk's password are sent once and their fields cleared at once; nothing here keeps
// them. Every word comes from the catalogue through I18N (i18n.js, loaded first), in the
// page's language. The clerk signs in first (the work area is hidden until then); signing
// out, or "Next customer", clears everything the page shows about a customer.
"use strict";

(() => {
  const CSRF = document.querySelector('meta[name="csrf-token"]').content;
  const MODE_COOKIE = "cardsvc_counter_mode";
  const root = document.documentElement;
  const $ = (id) => document.getElementById(id);
  const t = (key, params) => I18N.t(key, params);
  let state = null;
  let lastNotice = "";
  let pending = null; // {path, body, text}: what the clerk is asked to confirm
  let entitlementsFor = null;
  let listed = [];
  let signedIn; // the clerk's client id as last shown (null: nobody; undefined: not yet)
  let person = null; // the person looked up: {answer, citizenId}
  let reprinted = null; // a receipt from the journal, shown instead of the desk's
  let canPinBefore = false;

  // -- helpers --------------------------------------------------------------------------

  function show(el, visible) { el.hidden = !visible; }

  function say(title, detail, next, info = false, technical = "") {
    $("message-title").textContent = title || "";
    $("message-detail").textContent = detail || "";
    $("message-next").textContent = next || "";
    $("message").classList.toggle("info", info);
    // The card stack's or the issuer's own words (often English): for support, folded.
    $("message-technical-text").textContent = technical || "";
    $("message-technical").open = false;
    show($("message-technical"), Boolean(technical));
    show($("message"), Boolean(title || detail));
  }

  function quiet() { say("", "", ""); }

  function sayProblem(problem) {
    say(problem.title || t("counter.msg.error"), problem.detail || "", problem.next || "", false,
        typeof problem.technical === "string" ? problem.technical : "");
  }

  function focus(el) {
    if (el && !el.hidden) el.focus();
  }

  async function call(method, path, body) {
    // The agent answers problems in the page's language.
    const init = { method, headers: { Accept: "application/json", "Accept-Language": I18N.lang } };
    if (method !== "GET") {
      init.headers["Content-Type"] = "application/json";
      init.headers["X-CSRF-Token"] = CSRF;
      init.body = JSON.stringify(body || {});
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (_err) {
      throw { title: t("counter.msg.agent-down.title"), detail: t("counter.msg.agent-down.detail"),
              next: t("counter.msg.agent-down.next") };
    }
    let data = {};
    try { data = await response.json(); } catch (_err) { data = {}; }
    if (!response.ok) throw data;
    return data;
  }

  // Yuan typed by the clerk -> integer fen, without floating point.
  function toFen(text) {
    const match = /^\s*(\d{1,8})(?:[.,](\d{1,2}))?\s*$/.exec(text || "");
    if (!match) return null;
    const fen = parseInt(match[1], 10) * 100 + parseInt((match[2] || "0").padEnd(2, "0"), 10);
    return fen > 0 ? fen : null;
  }

  function named(prefix, value, other) {
    const key = `${prefix}${value}`;
    return I18N.has(key) ? t(key) : t(other, { state: value });
  }

  function element(tag, text, className) {
    const el = document.createElement(tag);
    if (text !== undefined) el.textContent = text;
    if (className) el.className = className;
    return el;
  }

  function button(text, label, onClick, className = "secondary") {
    const el = element("button", text, className);
    el.type = "button";
    if (label && label !== text) el.setAttribute("aria-label", label);
    el.addEventListener("click", onClick);
    return el;
  }

  // -- rendering ------------------------------------------------------------------------

  function render(next) {
    state = next;
    $("terminal").textContent = t("counter.terminal.label",
      { name: next.terminal_name || t("counter.terminal.unnamed") });
    $("terminal").title = next.terminal;
    renderClerk(next.clerk);
    renderLink(next.link);
    renderCard(next);
    renderNotice(next.notice);
    renderReceipt(reprinted || next.receipt);
  }

  function renderClerk(clerk) {
    const id = clerk ? clerk.client_id : null;
    show($("signin"), !clerk);
    show($("work"), Boolean(clerk));
    show($("clerk-bar"), Boolean(clerk));
    $("clerk-name").textContent = clerk ? t("counter.clerk.signed-in", { name: clerk.name }) : "";
    if (id === signedIn) return;
    const was = signedIn;
    signedIn = id;
    if (!clerk) {
      if (was) forgetCustomer();
      focus($("clerk-id"));
    } else {
      focus($("lookup-id"));
    }
  }

  function renderLink(link) {
    const badge = $("link");
    badge.dataset.online = link.online === null ? "" : String(link.online);
    badge.textContent = t(link.online === null ? "counter.link.checking"
      : link.online ? "counter.link.online" : "counter.link.offline");
    badge.title = link.detail || "";
    const journal = link.journal;
    $("pending").textContent = String(journal.pending);
    $("pending").dataset.count = String(journal.pending);
    $("conflicts").textContent = String(journal.conflicts);
    $("conflicts").dataset.count = String(journal.conflicts);
    const banner = $("offline-banner");
    if (!journal.intact) {
      banner.textContent = t("counter.banner.journal");
      banner.title = journal.reason || ""; // the technical reason, for support
      show(banner, true);
    } else if (link.online === false) {
      banner.textContent = t("counter.banner.offline", { pending: journal.pending });
      banner.title = "";
      show(banner, true);
    } else {
      show(banner, false);
    }
  }

  function renderCard(s) {
    const card = $("card-state");
    card.dataset.present = String(s.card.present);
    card.dataset.phase = s.card.phase;
    const ended = s.card.phase === "ended" && s.card.present;
    card.textContent = s.reader.error && !s.card.present ? s.reader.error
      : t(ended ? "counter.phase.ended-in-reader" : `counter.phase.${s.card.phase}`);
    $("reader-name").textContent = s.reader.name ? t("counter.reader.name", { name: s.reader.name }) : "";
    // The virtual reader's card cannot be pulled: the next customer starts with a check.
    show($("next-check-button"), ended);

    const check = s.check;
    show($("check"), Boolean(check));
    if (check) {
      const verdict = $("verdict");
      verdict.dataset.verdict = check.verdict;
      verdict.textContent = check.meaning;
      const steps = $("steps");
      steps.replaceChildren(...check.steps.map((step) => {
        const li = document.createElement("li");
        li.dataset.step = step.step;
        li.dataset.outcome = step.outcome;
        li.textContent = t("counter.step.line",
          { step: t(`counter.step.${step.step}`), outcome: t(`counter.outcome.${step.outcome}`) });
        li.title = step.reason; // the technical detail, as the CLI prints it
        return li;
      }));
      $("advice").textContent = check.advice;
    }
    const id = s.identity;
    show($("identity"), Boolean(id) && Boolean(check) && check.card_ok);
    if (id) {
      $("id-name").textContent = id.name;
      $("id-card-number").textContent = id.card_number;
      $("id-sex").textContent = t(`counter.sex.${id.sex}`);
      $("id-birth-date").textContent = I18N.date(id.birth_date);
      $("id-region").textContent = id.region;
      $("id-citizen-id").textContent = id.citizen_id_masked;
      $("id-validity").textContent = t("counter.identity.validity-range",
        { start: I18N.date(id.issue_date), end: I18N.date(id.expiry_date) });
    }

    const present = s.card.present;
    const busy = s.card.phase === "signing" || s.card.phase === "checking";
    const canPin = Boolean(present && check && check.card_ok && !check.pin_verified &&
      s.card.phase !== "ended" && !busy);
    show($("pin-form"), canPin);
    if (canPin) {
      const tries = check.pin_tries_left;
      $("pin-tries").textContent = tries === null ? "" : t("counter.pin.tries", { tries });
      show($("last-try-label"), tries === 1);
    }
    // After the card check, the PIN field (not while a receipt is being handed over).
    if (canPin && !canPinBefore && !(reprinted || s.receipt) && s.clerk) focus($("pin"));
    canPinBefore = canPin;
    const canServe = present && check && check.pin_verified && s.card.phase === "pin-ok";
    show($("services"), Boolean(canServe) && !pending);
    show($("confirm"), Boolean(canServe) && Boolean(pending));
    $("confirm-button").disabled = !canServe;
    if (!canServe) pending = null;
    if (canServe && entitlementsFor !== id.card_number) loadEntitlements(id.card_number);
    if (!present) entitlementsFor = null;
  }

  function renderNotice(notice) {
    const key = notice ? JSON.stringify(notice) : "";
    if (key === lastNotice) return;
    lastNotice = key;
    if (notice) sayProblem(notice);
  }

  function forWhat(receipt) {
    if (receipt.kind !== "benefit") return t("counter.receipt.bill", { reference: receipt.reference });
    return receipt.benefit ? I18N.benefit(receipt.benefit, receipt.period)
      : t("counter.entitlement.by-id", { id: receipt.entitlement });
  }

  function renderReceipt(receipt) {
    show($("receipt"), Boolean(receipt));
    if (!receipt) return;
    const hall = receipt.hall || {};
    $("receipt-hall").textContent = hall.name || "";
    $("receipt-hall-address").textContent = hall.address || "";
    show($("receipt-hall"), Boolean(hall.name));
    show($("receipt-hall-address"), Boolean(hall.address));
    show($("receipt-reprint"), Boolean(receipt.reprint));
    $("receipt-kind").textContent = t(`counter.receipt.kind.${receipt.kind}`);
    $("receipt-amount").textContent = I18N.money(receipt.amount_fen);
    $("receipt-for").textContent = forWhat(receipt);
    $("receipt-name").textContent = receipt.name;
    $("receipt-card").textContent = receipt.card_number;
    $("receipt-clerk").textContent = receipt.clerk_name || t("counter.receipt.no-clerk");
    $("receipt-mode").textContent = t(`counter.receipt.mode.${receipt.mode}`);
    $("receipt-mode").dataset.mode = receipt.mode;
    $("receipt-state").textContent = named("counter.receipt.state.", receipt.state,
      "counter.receipt.state.other");
    $("receipt-seq").textContent = String(receipt.seq);
    $("receipt-counter").textContent = String(receipt.counter);
    $("receipt-time").textContent = I18N.beijing(receipt.at);
    $("receipt-time").dataset.at = receipt.at;
    $("receipt-terminal").textContent = receipt.terminal_name || t("counter.terminal.unnamed");
    $("receipt-terminal").dataset.terminal = receipt.terminal;
    $("receipt-transaction").textContent = receipt.transaction_id || t("counter.receipt.transaction-pending");
    $("receipt-code").textContent = receipt.code || t("counter.receipt.code-none");
    show($("receipt-check"), Boolean(receipt.code));
  }

  // -- entitlements at the desk -----------------------------------------------------------

  async function loadEntitlements(cardNumber) {
    entitlementsFor = cardNumber;
    const box = $("entitlements");
    box.replaceChildren();
    $("entitlements-note").textContent = t("counter.entitlements.loading");
    try {
      const answer = await call("GET", "/api/entitlements");
      listed = answer.items;
      $("entitlements-note").textContent = t(listed.length
        ? "counter.entitlements.open" : "counter.entitlements.none");
      box.replaceChildren(...listed.map((item, index) => {
        const label = document.createElement("label");
        const radio = document.createElement("input");
        radio.type = "radio";
        radio.name = "entitlement";
        radio.value = String(index);
        radio.dataset.id = item.id;
        if (index === 0) radio.checked = true;
        label.append(radio, ` ${t("counter.entitlements.item",
          { what: I18N.benefit(item.benefit, item.period), amount: I18N.money(item.amount_fen) })}`);
        return label;
      }));
    } catch (problem) {
      listed = [];
      $("entitlements-note").textContent = t("counter.entitlements.failed",
        { detail: problem.detail || t("counter.entitlements.cannot-list") });
      $("manual").open = true;
    }
    if (!$("services").hidden) {
      focus(document.querySelector('#entitlements input[type="radio"]:checked') || $("collect-button"));
    }
  }

  // -- a confirmation in the page (a modal <dialog>: focus inside, Escape cancels) --------

  let answerDialog = null;
  let opener = null;

  function confirmInPage(heading, text, yes) {
    closeDialog(false);
    $("dialog-heading").textContent = heading;
    $("dialog-text").textContent = text;
    $("dialog-yes").textContent = yes;
    opener = document.activeElement;
    $("dialog").showModal();
    $("dialog-no").focus(); // the safe answer first
    return new Promise((resolve) => { answerDialog = resolve; });
  }

  function closeDialog(result) {
    const resolve = answerDialog;
    answerDialog = null;
    if ($("dialog").open) $("dialog").close();
    if (resolve) {
      resolve(result);
      if (opener && document.contains(opener)) opener.focus();
    }
  }

  $("dialog-no").addEventListener("click", () => closeDialog(false));
  $("dialog-yes").addEventListener("click", () => closeDialog(true));
  $("dialog").addEventListener("cancel", (event) => { event.preventDefault(); closeDialog(false); });

  // -- the clerk --------------------------------------------------------------------------

  $("signin").addEventListener("submit", async (event) => {
    event.preventDefault();
    const clientId = $("clerk-id").value.trim();
    const password = $("clerk-password").value;
    $("clerk-password").value = "";
    if (!clientId || !password) {
      say(t("counter.msg.check-input.title"), t("counter.clerk.signin.missing"), "");
      focus(clientId ? $("clerk-password") : $("clerk-id"));
      return;
    }
    quiet();
    $("sign-in-button").disabled = true;
    try {
      const answer = await call("POST", "/api/clerk/sign-in", { client_id: clientId, password });
      say(answer.title, answer.detail, "", true);
      if (state) render({ ...state, clerk: answer.clerk });
    } catch (problem) {
      sayProblem(problem);
      focus($("clerk-password"));
    } finally {
      $("sign-in-button").disabled = false;
    }
  });

  $("sign-out-button").addEventListener("click", async () => {
    try {
      const answer = await call("POST", "/api/clerk/sign-out", {});
      forgetCustomer();
      render(answer.state);
      say(answer.title, answer.detail, "", true);
      focus($("clerk-id"));
    } catch (problem) {
      sayProblem(problem);
    }
  });

  // -- a person, by ID number -----------------------------------------------------------

  function forgetCustomer() {
    person = null;
    reprinted = null;
    pending = null;
    closeDialog(false);
    $("lookup-id").value = "";
    show($("person"), false);
    hideCode();
    $("receipts-list").replaceChildren();
    $("receipts-note").textContent = "";
    $("qr-text").value = "";
    show($("qr-result"), false);
    $("qr-attributes").replaceChildren();
    for (const id of ["entitlement-id", "entitlement-amount", "fee-amount", "fee-reference", "pin",
      "activate-text"]) {
      $(id).value = "";
    }
    quiet();
  }

  function hideCode() {
    $("code").textContent = "";
    $("code-expires").textContent = "";
    show($("code-box"), false);
  }

  async function lookUp(citizenId, { quietly = false } = {}) {
    const answer = await call("POST", "/api/persons/lookup", { citizen_id: citizenId });
    person = { answer, citizenId };
    renderPerson(answer);
    if (!quietly) focus($("person-name"));
  }

  function renderPerson(answer) {
    const p = answer.person;
    $("person-name").textContent = p.name;
    $("person-sex").textContent = t(`counter.sex.${p.sex === "F" || p.sex === "female" ? "female" : "male"}`);
    $("person-birth-date").textContent = I18N.date(p.birth_date);
    $("person-region").textContent = p.region;
    $("person-citizen-id").textContent = p.citizen_id_masked;
    $("person-deceased").textContent = p.deceased_on ? t("counter.person.deceased", { date: I18N.date(p.deceased_on) }) : "";
    show($("person-deceased"), Boolean(p.deceased_on));

    const cards = answer.cards.map((c) => {
      const li = element("li");
      li.dataset.card = c.card_number;
      li.dataset.state = c.state;
      li.append(element("span", t("counter.person.card.line",
        { number: c.card_number, state: named("counter.card-state.", c.state, "counter.card-state.other") }), "what"));
      const more = [t("counter.identity.validity-range", { start: I18N.date(c.issue_date), end: I18N.date(c.expiry_date) })];
      if (c.suspended_until) more.push(t("counter.person.card.suspended-until", { date: I18N.beijing(c.suspended_until) }));
      li.append(element("span", more.join(" · "), "note"));
      const actions = element("span", undefined, "actions");
      if (c.state === "suspended") {
        actions.append(button(t("counter.card-action.resume"),
          t("counter.card-action.resume-card", { number: c.card_number }), () => resume(c.card_number)));
      }
      if (c.state === "active") {
        actions.append(button(t("counter.card-action.loss-temporary"),
          t("counter.card-action.loss-temporary-card", { number: c.card_number }),
          () => reportLoss(c.card_number, false)));
      }
      if (c.state === "active" || c.state === "suspended") {
        actions.append(button(t("counter.card-action.loss-formal"),
          t("counter.card-action.loss-formal-card", { number: c.card_number }),
          () => reportLoss(c.card_number, true), "danger"));
      }
      if (actions.childElementCount) li.append(actions);
      return li;
    });
    $("person-cards").replaceChildren(...(cards.length ? cards : [element("li", t("counter.person.no-cards"), "empty")]));

    const ecards = answer.ecards.map((e) => {
      const li = element("li");
      li.dataset.state = e.state;
      li.append(element("span", t("counter.person.ecard.line",
        { number: e.card_number, state: named("counter.ecard-state.", e.state, "counter.card-state.other") }), "what"));
      const via = named("counter.ecard-via.", e.activated_via, "counter.card-state.other");
      li.append(element("span", t("counter.person.ecard.activated", { via, at: I18N.beijing(e.activated_at) }), "note"));
      return li;
    });
    $("person-ecards").replaceChildren(...(ecards.length ? ecards : [element("li", t("counter.person.no-ecards"), "empty")]));

    const open = answer.entitlements.map((e) => {
      const li = element("li");
      li.dataset.id = e.id;
      li.append(element("span", I18N.benefit(e.benefit, e.period), "what"),
                element("span", I18N.money(e.amount_fen), "amount"));
      return li;
    });
    $("person-entitlements").replaceChildren(...(open.length ? open : [element("li", t("counter.person.no-entitlements"), "empty")]));
    show($("person"), true);
  }

  async function refreshPerson() {
    if (!person) return;
    try { await lookUp(person.citizenId, { quietly: true }); } catch (_problem) { /* shown before */ }
  }

  async function resume(cardNumber) {
    quiet();
    try {
      const answer = await call("POST", `/api/cards/${encodeURIComponent(cardNumber)}/resume`, {});
      say(answer.title, answer.detail, "", true);
      await refreshPerson();
      focus($("person-name"));
    } catch (problem) {
      sayProblem(problem);
    }
  }

  async function reportLoss(cardNumber, formal) {
    const kind = formal ? "formal" : "temporary";
    const yes = await confirmInPage(t(`counter.loss.${kind}.heading`),
      t(`counter.loss.${kind}.text`, { number: cardNumber, name: person ? person.answer.person.name : "" }),
      t(`counter.loss.${kind}.yes`));
    if (!yes) return;
    quiet();
    try {
      const answer = await call("POST", `/api/cards/${encodeURIComponent(cardNumber)}/loss-report`, { formal });
      say(answer.title, answer.detail, "", true);
      await refreshPerson();
      focus($("person-name"));
    } catch (problem) {
      sayProblem(problem);
    }
  }

  $("lookup-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const citizenId = $("lookup-id").value.trim().toUpperCase();
    if (!citizenId) {
      say(t("counter.msg.check-input.title"), t("counter.person.missing"), "");
      return;
    }
    quiet();
    hideCode();
    show($("person"), false);
    person = null;
    $("lookup-button").disabled = true;
    try {
      await lookUp(citizenId);
      $("lookup-id").value = ""; // the full number does not stay on the screen
    } catch (problem) {
      sayProblem(problem);
      focus($("lookup-id"));
    } finally {
      $("lookup-button").disabled = false;
    }
  });

  $("code-button").addEventListener("click", async () => {
    if (!person) return;
    quiet();
    hideCode();
    try {
      const answer = await call("POST",
        `/api/persons/${encodeURIComponent(person.answer.person.id)}/ecard-activation-codes`, {});
      $("code").textContent = answer.code;
      $("code-expires").textContent = t("counter.ecard.code.expires",
        { at: I18N.beijing(answer.expires_at), attempts: answer.attempts });
      show($("code-box"), true);
      say(answer.title, answer.detail, answer.next, true);
      focus($("code"));
    } catch (problem) {
      sayProblem(problem);
    }
  });

  // Shown once: hidden, it is gone from the page (a new code replaces it at the issuer).
  $("code-hide").addEventListener("click", () => { hideCode(); focus($("code-button")); });

  // -- the card and the PIN ---------------------------------------------------------------

  $("pin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const field = $("pin");
    const pin = field.value;
    field.value = "";
    if (!pin) return;
    quiet();
    $("pin-button").disabled = true;
    let ok = false;
    try {
      render(await call("POST", "/api/pin", { pin, allow_last_try: $("last-try").checked }));
      say(t("counter.msg.pin-ok.title"), t("counter.msg.pin-ok.detail"), "", true);
      ok = true;
    } catch (problem) {
      sayProblem(problem);
    } finally {
      $("pin-button").disabled = false;
      $("last-try").checked = false;
    }
    if (!ok) focus($("pin")); // a wrong PIN: straight back to the field
    // The PIN again for a card whose entitlements are listed already: straight to them
    // (the first time, the list's loading moves the focus when it is there).
    else if (entitlementsFor !== null && !$("services").hidden) {
      focus(document.querySelector('#entitlements input[type="radio"]:checked') || $("collect-button"));
    }
  });

  async function check() {
    quiet();
    reprinted = null;
    try { render(await call("POST", "/api/check", {})); } catch (problem) { sayProblem(problem); }
  }

  $("recheck-button").addEventListener("click", check);
  $("next-check-button").addEventListener("click", check);

  const TABS = ["collect", "pay", "activate"];

  function selectTab(name) {
    for (const tab of TABS) {
      $(`tab-${tab}`).setAttribute("aria-selected", String(name === tab));
      $(`tab-${tab}`).tabIndex = name === tab ? 0 : -1;
      show($(`${tab}-form`), name === tab);
    }
  }
  for (const [index, tab] of TABS.entries()) {
    $(`tab-${tab}`).addEventListener("click", () => selectTab(tab));
    $(`tab-${tab}`).addEventListener("keydown", (event) => {
      if (event.key !== "ArrowLeft" && event.key !== "ArrowRight") return;
      const step = event.key === "ArrowRight" ? 1 : TABS.length - 1;
      const other = TABS[(index + step) % TABS.length];
      selectTab(other);
      $(`tab-${other}`).focus();
      event.preventDefault();
    });
  }

  function ask(path, body, text) {
    pending = { path, body, text };
    $("confirm-text").textContent = text;
    quiet();
    if (state) render(state);
    focus($("confirm-button"));
  }

  $("collect-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = state && state.identity ? state.identity.name : "";
    const manualId = $("entitlement-id").value.trim();
    const chosen = document.querySelector('input[name="entitlement"]:checked');
    if (manualId) {
      const fen = toFen($("entitlement-amount").value);
      if (!/^[0-9a-fA-F-]{32,36}$/.test(manualId) || fen === null) {
        say(t("counter.msg.check-input.title"), t("counter.msg.check-input.entitlement"),
            t("counter.msg.check-input.next"));
        return;
      }
      ask("/api/collect", { entitlement_id: manualId, amount_fen: fen },
          t("counter.confirm.collect", { what: t("counter.entitlement.by-id", { id: manualId }),
            amount: I18N.money(fen), name }));
    } else if (chosen) {
      const item = listed[Number(chosen.value)];
      ask("/api/collect", { entitlement_id: item.id, amount_fen: item.amount_fen },
          t("counter.confirm.collect", { what: I18N.benefit(item.benefit, item.period),
            amount: I18N.money(item.amount_fen), name }));
    } else {
      say(t("counter.msg.nothing-chosen.title"), t("counter.msg.nothing-chosen.detail"), "");
    }
  });

  // Enter on a chosen entitlement continues (a radio button does not submit by itself).
  $("entitlements").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && event.target.matches('input[type="radio"]')) {
      event.preventDefault();
      $("collect-form").requestSubmit();
    }
  });

  $("pay-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const fen = toFen($("fee-amount").value);
    const reference = $("fee-reference").value.trim();
    if (fen === null || !/^[A-Za-z0-9._:/-]{1,64}$/.test(reference)) {
      say(t("counter.msg.check-input.title"), t("counter.msg.check-input.fee"),
          t("counter.msg.check-input.next"));
      return;
    }
    const name = state && state.identity ? state.identity.name : "";
    ask("/api/pay", { amount_fen: fen, reference },
        t("counter.confirm.pay", { amount: I18N.money(fen), reference, name }));
  });

  // An e-card activated at the counter: the phone's key from the wallet's QR code (the
  // scanner types its text and Enter), the card whose PIN was just verified signs for it.
  $("activate-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const field = $("activate-text");
    const text = field.value.trim();
    field.value = ""; // ready for the next scan, as the QR field is
    if (!text) {
      say(t("counter.msg.check-input.title"), t("counter.activate.missing"), "");
      focus(field);
      return;
    }
    quiet();
    $("activate-button").disabled = true;
    let done = false;
    try {
      const answer = await call("POST", "/api/ecards/counter-activation", { text });
      say(answer.title, answer.detail, answer.next, true);
      done = true;
    } catch (problem) {
      sayProblem(problem);
    } finally {
      $("activate-button").disabled = false;
    }
    if (done) {
      selectTab("collect");
      await refreshPerson();
    } else {
      focus(field); // a wrong code: the field again (gone if the PIN must be entered again)
    }
  });

  $("back-button").addEventListener("click", () => {
    pending = null;
    if (state) render(state);
    focus($("collect-button"));
  });

  $("confirm-button").addEventListener("click", async () => {
    if (!pending) return;
    const { path, body } = pending;
    pending = null;
    reprinted = null;
    $("confirm-button").disabled = true;
    let done = false;
    try {
      const answer = await call("POST", path, body);
      if (state) state = { ...state, receipt: answer.receipt };
      renderReceipt(answer.receipt);
      say(t("counter.msg.done.title"), t(answer.receipt.mode === "offline"
        ? "counter.msg.done.offline" : "counter.msg.done.online"), t("counter.msg.done.next"), true);
      $("entitlement-id").value = "";
      $("entitlement-amount").value = "";
      $("fee-amount").value = "";
      $("fee-reference").value = "";
      entitlementsFor = null;
      done = true;
    } catch (problem) {
      sayProblem(problem);
    } finally {
      if (state) render(state);
    }
    if (done) focus($("print-button"));
  });

  $("print-button").addEventListener("click", () => window.print());

  async function nextCustomer() {
    forgetCustomer();
    try {
      render(await call("POST", "/api/done", {}));
    } catch (problem) {
      sayProblem(problem);
    }
    // A card still in the reader: one key away from checking it for the next customer.
    focus($("next-check-button").hidden ? $("lookup-id") : $("next-check-button"));
  }
  $("done-button").addEventListener("click", nextCustomer);
  $("next-customer-button").addEventListener("click", nextCustomer);

  // -- receipts from the journal --------------------------------------------------------

  $("receipts-button").addEventListener("click", async () => {
    const card = state && state.identity ? state.identity.card_number : "";
    const query = card ? `?card_number=${encodeURIComponent(card)}&limit=20` : "?limit=20";
    $("receipts-note").textContent = t("counter.receipts.loading");
    try {
      const answer = await call("GET", `/api/receipts${query}`);
      $("receipts-note").textContent = answer.items.length
        ? t(card ? "counter.receipts.for-card" : "counter.receipts.recent", { card })
        : t("counter.receipts.none");
      $("receipts-list").replaceChildren(...answer.items.map((r) => {
        const li = element("li");
        li.dataset.seq = String(r.seq);
        li.append(element("span", t("counter.receipts.line",
          { seq: r.seq, kind: t(`counter.receipt.kind.${r.kind}`), what: forWhat(r), name: r.name }), "what"),
        element("span", I18N.money(r.amount_fen), "amount"),
        element("span", I18N.beijing(r.at), "note"));
        const actions = element("span", undefined, "actions");
        actions.append(button(t("counter.receipts.reprint"),
          t("counter.receipts.reprint-seq", { seq: r.seq }), () => reprint(r.seq)));
        li.append(actions);
        return li;
      }));
      const first = document.querySelector("#receipts-list button");
      if (first) focus(first);
    } catch (problem) {
      $("receipts-note").textContent = "";
      sayProblem(problem);
    }
  });

  async function reprint(seq) {
    quiet();
    try {
      const answer = await call("GET", `/api/receipts/${encodeURIComponent(seq)}`);
      reprinted = answer.receipt;
      renderReceipt(reprinted);
      focus($("print-button"));
    } catch (problem) {
      sayProblem(problem);
    }
  }

  // -- QR codes ---------------------------------------------------------------------------

  $("qr-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const field = $("qr-text");
    const text = field.value.trim();
    field.value = "";
    if (!text) return;
    const result = $("qr-result");
    result.dataset.outcome = "";
    $("qr-message").textContent = t("counter.qr.checking");
    $("qr-attributes").replaceChildren();
    show(result, true);
    try {
      const answer = await call("POST", "/api/qr", { text, purpose: $("qr-purpose").value });
      result.dataset.outcome = answer.outcome;
      $("qr-message").textContent = answer.message;
      const rows = Object.entries(answer.attributes || {}).flatMap(([key, value]) => {
        const dt = document.createElement("dt");
        const attribute = `counter.qr.attribute.${key}`;
        dt.textContent = I18N.has(attribute) ? t(attribute) : key.replaceAll("_", " ");
        const dd = document.createElement("dd");
        dd.textContent = String(value);
        return [dt, dd];
      });
      $("qr-attributes").replaceChildren(...rows);
    } catch (problem) {
      result.dataset.outcome = "invalid";
      $("qr-message").textContent = t("counter.qr.error",
        { title: problem.title || t("counter.msg.error"), detail: problem.detail || "" });
    }
    field.focus();
  });

  // -- the mode for the elderly ---------------------------------------------------------

  function layoutMode() {
    $("mode-switch").setAttribute("aria-pressed", String(root.dataset.mode === "care"));
  }

  $("mode-switch").addEventListener("click", () => {
    const next = root.dataset.mode === "care" ? "standard" : "care";
    root.dataset.mode = next;
    // Remembered by this browser (a year); the server renders the page in it next time.
    document.cookie = `${MODE_COOKIE}=${next}; path=/; max-age=31536000; SameSite=Strict`;
    layoutMode();
  });

  // -- live state -----------------------------------------------------------------------

  function connect() {
    const source = new EventSource("/api/events");
    source.addEventListener("state", (event) => render(JSON.parse(event.data)));
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) setTimeout(connect, 1000);
    });
  }

  selectTab("collect");
  layoutMode();
  I18N.ready.then(connect);
})();
