// The counter page: state arrives over Server-Sent Events (/api/events) as whole
// snapshots; actions are JSON POSTs carrying the page's CSRF token. The PIN is sent once,
// to /api/pin, and the field is cleared at once; nothing here keeps it.
"use strict";

(() => {
  const CSRF = document.querySelector('meta[name="csrf-token"]').content;
  const $ = (id) => document.getElementById(id);
  const STEP_NAMES = {
    "read-document": "Read the card data",
    "verify-document": "Issuer's signature on the card data",
    "chip-authentication": "Chip proves it is the real card",
    "status": "Card status (not lost or revoked)",
    "pin": "PIN",
  };
  const PHASES = {
    absent: "No card in the reader: insert a card.",
    checking: "Card inserted: checking it…",
    checked: "Card checked.",
    "pin-ok": "Card checked, PIN verified.",
    signing: "The card is signing: do not take it out.",
    done: "Done: the card may be taken out.",
    ended: "Customer finished: take the card out.",
    error: "The last step failed: see the message.",
  };

  let state = null;
  let lastNotice = "";
  let pending = null; // {path, body, text}: what the clerk is asked to confirm
  let tab = "collect";
  let entitlementsFor = null;
  const entitlementNames = new Map();
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
    say(problem.title || "Error", problem.detail || "", problem.next || "");
  }

  async function call(method, path, body) {
    const init = { method, headers: { Accept: "application/json" } };
    if (method !== "GET") {
      init.headers["Content-Type"] = "application/json";
      init.headers["X-CSRF-Token"] = CSRF;
      init.body = JSON.stringify(body || {});
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (_err) {
      throw { title: "The counter agent does not answer",
              detail: "The page cannot reach the reader agent on this machine.",
              next: "Check that `reader-agent serve` is running, then reload the page." };
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

  function yuan(fen) {
    const whole = Math.floor(fen / 100).toLocaleString("en-US");
    return `${whole}.${String(fen % 100).padStart(2, "0")}`;
  }

  // -- rendering ------------------------------------------------------------------------

  function render(next) {
    state = next;
    $("terminal").textContent = `Terminal ${next.terminal}`;
    renderLink(next.link);
    renderCard(next);
    renderNotice(next.notice);
    renderReceipt(next.receipt);
  }

  function renderLink(link) {
    const badge = $("link");
    badge.dataset.online = link.online === null ? "" : String(link.online);
    badge.textContent = link.online === null ? "Checking the issuer…"
      : link.online ? "Online" : "OFFLINE";
    badge.title = link.detail || "";
    const journal = link.journal;
    $("pending").textContent = String(journal.pending);
    $("pending").dataset.count = String(journal.pending);
    $("conflicts").textContent = String(journal.conflicts);
    $("conflicts").dataset.count = String(journal.conflicts);
    const banner = $("offline-banner");
    if (!journal.intact) {
      banner.textContent = `The journal is damaged (${journal.reason}). This counter takes ` +
        "no new transactions: call support.";
      show(banner, true);
    } else if (link.online === false) {
      banner.textContent = "Offline: the issuer cannot be reached. Collections and payments " +
        "follow the offline rules and are uploaded when it is back " +
        `(${journal.pending} waiting). QR codes cannot be verified.`;
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
      : (PHASES[s.card.phase] || s.card.phase);
    $("reader-name").textContent = s.reader.name ? `Reader: ${s.reader.name}` : "";

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
        li.textContent = `${STEP_NAMES[step.step] || step.step}: ${step.reason}`;
        return li;
      }));
      $("advice").textContent = check.advice;
    }
    const id = s.identity;
    show($("identity"), Boolean(id) && Boolean(check) && check.card_ok);
    if (id) {
      $("id-name").textContent = id.name;
      $("id-card-number").textContent = id.card_number;
      $("id-sex").textContent = id.sex;
      $("id-birth-date").textContent = id.birth_date;
      $("id-region").textContent = id.region;
      $("id-citizen-id").textContent = id.citizen_id_masked;
      $("id-validity").textContent = `${id.issue_date} to ${id.expiry_date}`;
    }

    const present = s.card.present;
    const busy = s.card.phase === "signing" || s.card.phase === "checking";
    const canPin = present && check && check.card_ok && !check.pin_verified &&
      s.card.phase !== "ended" && !busy;
    show($("pin-form"), Boolean(canPin));
    if (canPin) {
      const tries = check.pin_tries_left;
      $("pin-tries").textContent = tries === null ? "" : `${tries} tries left`;
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
    $("receipt-kind").textContent = receipt.kind === "benefit" ? "Benefit collected" : "Fee paid";
    $("receipt-amount").textContent = `${receipt.amount_yuan} yuan`;
    const named = entitlementNames.get(receipt.entitlement);
    $("receipt-for").textContent = receipt.kind === "benefit"
      ? `${named ? named + ", " : ""}entitlement ${receipt.entitlement}`
      : `bill ${receipt.reference}`;
    $("receipt-name").textContent = receipt.name;
    $("receipt-card").textContent = receipt.card_number;
    $("receipt-mode").textContent = receipt.mode;
    $("receipt-mode").dataset.mode = receipt.mode;
    $("receipt-state").textContent = receipt.state === "accepted" ? "accepted by the issuer"
      : receipt.state === "signed" ? "recorded, to be uploaded to the issuer" : receipt.state;
    $("receipt-seq").textContent = String(receipt.seq);
    $("receipt-counter").textContent = String(receipt.counter);
    const at = new Date(receipt.at);
    $("receipt-time").textContent = `${at.toLocaleString()} (${receipt.at})`;
    $("receipt-terminal").textContent = receipt.terminal;
    $("receipt-transaction").textContent = receipt.transaction_id || "(assigned at upload)";
  }

  // -- entitlements ---------------------------------------------------------------------

  async function loadEntitlements(cardNumber) {
    entitlementsFor = cardNumber;
    const box = $("entitlements");
    box.replaceChildren();
    $("entitlements-note").textContent = "Loading the open entitlements…";
    try {
      const answer = await call("GET", "/api/entitlements");
      listed = answer.items;
      // Kept after collection (when the list no longer holds it) for the receipt.
      for (const item of listed) entitlementNames.set(item.id, `${item.benefit} ${item.period}`);
      $("entitlements-note").textContent = listed.length
        ? "Open entitlements:" : "No open entitlements for this cardholder.";
      box.replaceChildren(...listed.map((item, index) => {
        const label = document.createElement("label");
        const radio = document.createElement("input");
        radio.type = "radio";
        radio.name = "entitlement";
        radio.value = String(index);
        radio.dataset.id = item.id;
        if (index === 0) radio.checked = true;
        label.append(radio, ` ${item.benefit} ${item.period}: ${item.amount_yuan} yuan`);
        return label;
      }));
    } catch (problem) {
      listed = [];
      $("entitlements-note").textContent = `${problem.detail || "Cannot list entitlements."} ` +
        "Enter the entitlement id and amount from the cardholder's letter below.";
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
      say("PIN verified", "Choose the service, then confirm.", "", true);
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
        say("Please check what was entered",
            "The entitlement id is 32 hexadecimal digits (with or without dashes) and the " +
            "amount is in yuan, like 3500.00.", "Correct it and continue.");
        return;
      }
      ask("/api/collect", { entitlement_id: manualId, amount_fen: fen },
          `Pay out entitlement ${manualId}: ${yuan(fen)} yuan to ${name}?`);
    } else if (chosen) {
      const item = listed[Number(chosen.value)];
      ask("/api/collect", { entitlement_id: item.id, amount_fen: item.amount_fen },
          `Pay out ${item.benefit} for ${item.period}: ${item.amount_yuan} yuan to ${name}?`);
    } else {
      say("Nothing chosen", "Choose an entitlement, or enter one by hand.", "");
    }
  });

  $("pay-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const fen = toFen($("fee-amount").value);
    const reference = $("fee-reference").value.trim();
    if (fen === null || !/^[A-Za-z0-9._:/-]{1,64}$/.test(reference)) {
      say("Please check what was entered",
          "The amount is in yuan (like 25.50); the bill reference uses letters, digits and " +
          ". _ : / - only.", "Correct it and continue.");
      return;
    }
    const name = state && state.identity ? state.identity.name : "";
    ask("/api/pay", { amount_fen: fen, reference },
        `Charge ${yuan(fen)} yuan for bill ${reference} to ${name}'s card?`);
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
      say("Done", answer.receipt.mode === "offline"
        ? "Recorded offline: it is uploaded to the issuer when the counter is online again."
        : "Accepted.", "Print the receipt for the cardholder.", true);
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
    $("qr-message").textContent = "Checking the code with the issuer…";
    $("qr-attributes").replaceChildren();
    show(result, true);
    try {
      const answer = await call("POST", "/api/qr", { text, purpose: $("qr-purpose").value });
      result.dataset.outcome = answer.outcome;
      $("qr-message").textContent = answer.message;
      const rows = Object.entries(answer.attributes || {}).flatMap(([key, value]) => {
        const dt = document.createElement("dt");
        dt.textContent = key.replaceAll("_", " ");
        const dd = document.createElement("dd");
        dd.textContent = String(value);
        return [dt, dd];
      });
      $("qr-attributes").replaceChildren(...rows);
    } catch (problem) {
      result.dataset.outcome = "invalid";
      $("qr-message").textContent = `${problem.title || "Error"}: ${problem.detail || ""}`;
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
  connect();
})();
