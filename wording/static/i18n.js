// The pages' words and formats: the same catalogue as the Python side (wording/locales/*.po),
// loaded as JSON from the server that serves the page, and the same format.* rules as
// wording/formats.py. Exposes window.I18N; the page's own script awaits I18N.ready.
//
//   I18N.t("counter.pin.tries", { tries: 2 })   -> "还可尝试 2 次"
//   I18N.money(350000)                          -> "¥3,500.00"
//   I18N.beijing("2026-12-04T07:30:00+00:00")   -> "2026年12月4日 15:30"
//   I18N.date("2026-12-04")                     -> "2026年12月4日"
//   I18N.benefit("pension", "2026-12")          -> "养老金 2026年12月"
//
// The language is the page's <html lang> (the server chose it from the cookie the switch
// sets, else Accept-Language, else zh-CN). A key missing from the catalogue reads as
// common.text-missing, never as the key.
"use strict";

(() => {
  const root = document.documentElement;
  const base = root.dataset.i18n || "/i18n/";
  let lang = root.lang || "zh-CN";
  let catalogue = {};
  let cookie = "cardsvc_lang";

  function fill(template, params) {
    return template.replace(/\{(\w+)\}/g, (_, name) =>
      params && params[name] !== undefined && params[name] !== null ? String(params[name]) : "");
  }

  function has(key) { return Boolean(catalogue[key]); }

  function t(key, params) {
    const raw = catalogue[key] || catalogue["common.text-missing"] || "…";
    return fill(raw, params || {});
  }

  function grouped(fen) {
    const n = Number(fen);
    if (!Number.isSafeInteger(n)) return "";
    const sign = n < 0 ? "-" : "";
    const abs = Math.abs(n);
    const whole = String(Math.floor(abs / 100)).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return `${sign}${whole}.${String(abs % 100).padStart(2, "0")}`;
  }

  const money = (fen) => t("format.money", { amount: grouped(fen) });

  function dateParts(year, month, day) {
    return { year: String(year), month: String(month), day: String(day),
      mm: String(month).padStart(2, "0"), dd: String(day).padStart(2, "0") };
  }

  const BEIJING = new Intl.DateTimeFormat("en-US", {
    timeZone: "Asia/Shanghai", year: "numeric", month: "numeric", day: "numeric",
    hour: "numeric", minute: "numeric", hourCycle: "h23",
  });

  function beijing(iso) {
    const at = new Date(iso);
    if (Number.isNaN(at.getTime())) return String(iso || "");
    const part = Object.fromEntries(BEIJING.formatToParts(at).map((p) => [p.type, p.value]));
    return t("format.datetime", { ...dateParts(Number(part.year), Number(part.month), Number(part.day)),
      hour: part.hour.padStart(2, "0"), minute: part.minute.padStart(2, "0") });
  }

  function date(text) {
    const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(String(text || ""));
    if (!match) return String(text || "");
    return t("format.date", dateParts(Number(match[1]), Number(match[2]), Number(match[3])));
  }

  function period(text) {
    const match = /^(\d{4})-(\d{2})$/.exec(String(text || ""));
    const month = match ? Number(match[2]) : 0;
    if (!match || month < 1 || month > 12) return String(text || "");
    return t("format.period", { year: match[1], month: String(month), month_name: t(`month.${month}`) });
  }

  function benefit(code, periodText) {
    const key = `benefit.${code}`;
    const name = has(key) ? t(key) : t("benefit.other", { code });
    return t("format.benefit", { name, period: period(periodText) });
  }

  function choose(next) {
    // Remembered per browser (a year), read by the server when it renders the page.
    document.cookie = `${cookie}=${encodeURIComponent(next)}; path=/; max-age=31536000; SameSite=Strict`;
    try { localStorage.setItem(cookie, next); } catch (_) { /* private mode: the cookie is enough */ }
    location.reload();
  }

  function wireSwitch() {
    for (const button of document.querySelectorAll("[data-lang-choice]")) {
      const choice = button.dataset.langChoice;
      button.setAttribute("aria-pressed", String(choice === lang));
      button.addEventListener("click", () => { if (choice !== lang) choose(choice); });
    }
  }

  const ready = fetch(`${base}${encodeURIComponent(lang)}.json`, { cache: "no-cache" })
    .then((response) => (response.ok ? response.json() : Promise.reject(response.status)))
    .then((data) => {
      catalogue = data.messages || {};
      lang = data.lang || lang;
      cookie = data.cookie || cookie;
      root.lang = lang;
    })
    .catch(() => { catalogue = {}; })
    .then(() => {
      if (document.readyState === "loading") {
        return new Promise((resolve) => document.addEventListener("DOMContentLoaded", resolve));
      }
      return undefined;
    })
    .then(wireSwitch);

  window.I18N = {
    ready, t, has, money, beijing, date, period, benefit, choose,
    get lang() { return lang; },
  };
})();
