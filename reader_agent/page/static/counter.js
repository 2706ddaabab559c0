// The counter page: state arrives over Server-Sent Events (/api/events) as whole
// snapshots; actions are JSON POSTs carrying the page's CSRF token. The PIN is sent once,
// to /api/pin, and the field is cleared at once; nothing here keeps it. Every word comes
// from the catalogue through I18N (i18n.js, loaded first), in the page's language.
"use strict";

(() => {
  const CSRF = document.querySelector('meta[name="csrf-token"]').content;
  const $ = (id) => document.getElementById(id);
  const t = (key, params) => I18N.t(key, params);
  let state = null;
  let lastNotice = "";
  let pending = null; // {path, body, text}: what the clerk is asked to confirm
  let tab = "collect";
  let entitlementsFor = null;
  let listed = [];

  // -- helpers --------------------------------------------------------------------------

  function show(el, visible) { el.hidden = !visible; }

  function say(title, detail, next, info = false) {
    $("message-title").textContent = title || "";
    $("message-detail").textContent = detail || "";
    $("message-next").textContent = next || "";
    $("message").classList.toggle("info", info);
    show($("message"), Boolean(title || detail));
  }

  function quiet() { say("", "", ""); }

  function sayProblem(problem) {
    say(problem.title || t("counter.msg.error"), problem.detail || "", problem.next || "");
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


  // -- rendering ------------------------------------------------------------------------

  function render(next) {
    state = next;
    $("terminal").textContent = t("counter.terminal.label",
      { name: next.terminal_name || t("counter.terminal.unnamed") });
    $("terminal").title = next.terminal;
    renderLink(next.link);
    renderCard(next);
    renderNotice(next.notice);
    renderReceipt(next.receipt);
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
      banner.textContent = t("counter.banner.journal", { reason: journal.reason });
      show(banner, true);
    } else if (link.online === false) {
      banner.textContent = t("counter.banner.offline", { pending: journal.pending });
      show(banner, true);
    } else {
      show(banner, false);
    }
  }

  function renderCard(s) {
    const card = $("card-state");
    card.dataset.present = String(s.card.present);
    card.dataset.phase = s.card.phase;
    card.textContent = s.reader.error && !s.card.present ? s.reader.error
      : t(`counter.phase.${s.card.phase}`);
    $("reader-name").textContent = s.reader.name ? t("counter.reader.name", { name: s.reader.name }) : "";

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
    const canPin = present && check && check.card_ok && !check.pin_verified &&
      s.card.phase !== "ended" && !busy;
    show($("pin-form"), Boolean(canPin));
    if (canPin) {
      const tries = check.pin_tries_left;
      $("pin-tries").textContent = tries === null ? "" : t("counter.pin.tries", { tries });
      show($("last-try-label"), tries === 1);
    }
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

  function renderReceipt(receipt) {
    show($("receipt"), Boolean(receipt));
    if (!receipt) return;
    $("receipt-kind").textContent = t(`counter.receipt.kind.${receipt.kind}`);
    $("receipt-amount").textContent = I18N.money(receipt.amount_fen);
    $("receipt-for").textContent = receipt.kind !== "benefit"
      ? t("counter.receipt.bill", { reference: receipt.reference })
      : receipt.benefit ? I18N.benefit(receipt.benefit, receipt.period)
        : t("counter.entitlement.by-id", { id: receipt.entitlement });
    $("receipt-name").textContent = receipt.name;
    $("receipt-card").textContent = receipt.card_number;
    $("receipt-mode").textContent = t(`counter.receipt.mode.${receipt.mode}`);
    $("receipt-mode").dataset.mode = receipt.mode;
    const stateKey = `counter.receipt.state.${receipt.state}`;
    $("receipt-state").textContent = I18N.has(stateKey) ? t(stateKey)
      : t("counter.receipt.state.other", { state: receipt.state });
    $("receipt-seq").textContent = String(receipt.seq);
    $("receipt-counter").textContent = String(receipt.counter);
    $("receipt-time").textContent = I18N.beijing(receipt.at);
    $("receipt-time").dataset.at = receipt.at;
    $("receipt-terminal").textContent = receipt.terminal_name || t("counter.terminal.unnamed");
    $("receipt-terminal").dataset.terminal = receipt.terminal;
    $("receipt-transaction").textContent = receipt.transaction_id || t("counter.receipt.transaction-pending");
  }

  // -- entitlements ---------------------------------------------------------------------

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
  }

  // -- actions --------------------------------------------------------------------------

  $("pin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const field = $("pin");
    const pin = field.value;
    field.value = "";
    if (!pin) return;
    quiet();
    $("pin-button").disabled = true;
    try {
      render(await call("POST", "/api/pin", { pin, allow_last_try: $("last-try").checked }));
      say(t("counter.msg.pin-ok.title"), t("counter.msg.pin-ok.detail"), "", true);
    } catch (problem) {
      sayProblem(problem);
    } finally {
      $("pin-button").disabled = false;
      $("last-try").checked = false;
    }
  });

  $("recheck-button").addEventListener("click", async () => {
    quiet();
    try { render(await call("POST", "/api/check", {})); } catch (problem) { sayProblem(problem); }
  });

  function selectTab(name) {
    tab = name;
    $("tab-collect").setAttribute("aria-selected", String(name === "collect"));
    $("tab-pay").setAttribute("aria-selected", String(name === "pay"));
    show($("collect-form"), name === "collect");
    show($("pay-form"), name === "pay");
  }
  $("tab-collect").addEventListener("click", () => selectTab("collect"));
  $("tab-pay").addEventListener("click", () => selectTab("pay"));

  function ask(path, body, text) {
    pending = { path, body, text };
    $("confirm-text").textContent = text;
    quiet();
    if (state) render(state);
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

  $("back-button").addEventListener("click", () => {
    pending = null;
    if (state) render(state);
  });

  $("confirm-button").addEventListener("click", async () => {
    if (!pending) return;
    const { path, body } = pending;
    pending = null;
    $("confirm-button").disabled = true;
    try {
      const answer = await call("POST", path, body);
      renderReceipt(answer.receipt);
      say(t("counter.msg.done.title"), t(answer.receipt.mode === "offline"
        ? "counter.msg.done.offline" : "counter.msg.done.online"), t("counter.msg.done.next"), true);
      $("entitlement-id").value = "";
      $("entitlement-amount").value = "";
      $("fee-amount").value = "";
      $("fee-reference").value = "";
      entitlementsFor = null;
    } catch (problem) {
      sayProblem(problem);
    } finally {
      if (state) render(state);
    }
  });

  $("print-button").addEventListener("click", () => window.print());
  $("done-button").addEventListener("click", async () => {
    quiet();
    try { render(await call("POST", "/api/done", {})); } catch (problem) { sayProblem(problem); }
  });

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
        const named = `counter.qr.attribute.${key}`;
        dt.textContent = I18N.has(named) ? t(named) : key.replaceAll("_", " ");
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

  // -- live state -----------------------------------------------------------------------

  function connect() {
    const source = new EventSource("/api/events");
    source.addEventListener("state", (event) => render(JSON.parse(event.data)));
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) setTimeout(connect, 1000);
    });
  }

  selectTab("collect");
  I18N.ready.then(connect);
})();
