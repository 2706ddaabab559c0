"""The demo wallet page: static HTML and JS served by the issuer (no CDN, no build step).

The page holds a device key in the browser (WebCrypto, non-extractable, kept in
IndexedDB), activates an e-card with a one-time code and shows refreshing QR tokens,
talking only to the e-card endpoints the way a phone app would. Its words are the
catalogues of :mod:`wording`: the page is rendered in the browser's language (the
``cardsvc_lang`` cookie its 中文 / English switch sets, else ``Accept-Language``, else
zh-CN) and its script reads the same catalogue from ``/wallet/i18n/{lang}.json``.

Two more choices shape the page. The holder's: the mode for the elderly (关怀模式, large
text, high contrast, one action per screen), remembered in the ``cardsvc_wallet_mode``
cookie its switch sets, so the page is rendered in that mode from the first paint. The
issuer's: developer aids (the QR code's text) only with ``wallet_developer_aids``, and
what to do after a loss report (``wallet_hotline``, ``wallet_loss_next_steps`` per
language, else the catalogue's words).

For an activation at a counter the page shows its device key as a QR code; the image is
drawn here (``/wallet/activation-qr.svg``), for that one kind of text only
(:mod:`cardsvc.core.pairing`), so the page needs no QR library of its own.
"""

from __future__ import annotations

import html
import re
from functools import cache
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from cardsvc.api.deps import ServicesDep
from cardsvc.core.pairing import MAX_TEXT, activation_text, parse_activation_text
from cardsvc.ecards.render import render
from cardsvc.settings import Settings
from wording import COOKIE, catalogue_json, negotiate, render_html, script, text

router = APIRouter(tags=["wallet"], include_in_schema=False)

#: Only the page's own files: no inline script, no third-party origin.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


#: The cookie that remembers the mode; its values are the page's ``data-mode``.
MODE_COOKIE = "cardsvc_wallet_mode"
MODES = ("standard", "care")
_DEVELOPER_AIDS = re.compile(r"<!--developer-aids-->.*?<!--/developer-aids-->\n?", re.S)


def mode(cookie: str | None) -> str:
    """The page's mode: ``care`` only when the browser chose it, else ``standard``."""
    return "care" if cookie == "care" else "standard"


def next_steps(settings: Settings, lang: str) -> str:
    """What a holder does after a loss report, in ``lang`` (the issuer's words if set)."""
    return settings.wallet_loss_next_steps.get(lang) or text(
        lang, "wallet.lost.next-steps", hotline=settings.wallet_hotline
    )


def _page(settings: Settings, lang: str, chosen_mode: str) -> str:
    page = render_html(_asset("wallet.html"), lang)
    if settings.wallet_developer_aids:
        page = re.sub(r"\s*<!--/?developer-aids-->", "", page)
    else:
        page = _DEVELOPER_AIDS.sub("", page)
    hotline = settings.wallet_hotline
    values = {
        # Device proofs sign the issuer's public URL (htu), which may differ from the
        # address the browser used: the page is told it.
        "ISSUER": settings.issuer.rstrip("/"),
        "MODE": chosen_mode,
        "HOTLINE": hotline,
        "HOTLINE_TEL": re.sub(r"[ -]", "", hotline),
        "NEXT_STEPS": next_steps(settings, lang),
        "CALL": text(lang, "wallet.lost.call", hotline=hotline),
    }
    for name, value in values.items():
        page = page.replace("{{" + name + "}}", html.escape(value, quote=True))
    return page


@cache
def _asset(name: str) -> str:
    return resources.files("cardsvc.api").joinpath("static", name).read_text("utf-8")


@router.get("/wallet", response_class=HTMLResponse)
async def wallet_page(request: Request, services: ServicesDep) -> HTMLResponse:
    lang = negotiate(cookie=request.cookies.get(COOKIE),
                     accept_language=request.headers.get("accept-language"))  # fmt: skip
    body = _page(services.settings, lang, mode(request.cookies.get(MODE_COOKIE)))
    return HTMLResponse(body, headers={**_HEADERS, "Vary": "Cookie, Accept-Language"})


@router.get("/wallet/i18n/{lang}.json")
async def wallet_catalogue(lang: str) -> JSONResponse:
    # An unknown language answers zh-CN's catalogue (with "lang": "zh-CN").
    return JSONResponse(catalogue_json(lang), headers=_HEADERS)


@router.get("/wallet/i18n.js")
async def wallet_i18n_script() -> Response:
    return Response(script(), media_type="text/javascript", headers=_HEADERS)


@router.get("/wallet/wallet.js")
async def wallet_script() -> Response:
    return Response(_asset("wallet.js"), media_type="text/javascript", headers=_HEADERS)


@router.get("/wallet/wallet.css")
async def wallet_style() -> Response:
    return Response(_asset("wallet.css"), media_type="text/css", headers=_HEADERS)


@router.get("/wallet/activation-qr.svg")
async def activation_qr(text: Annotated[str, Query(max_length=MAX_TEXT)]) -> Response:
    """The QR code of a wallet's counter-activation text (a public key: nothing secret);
    any other text is refused (422) rather than drawn."""
    key = parse_activation_text(text)
    image = await run_in_threadpool(render, activation_text(key), "svg")
    return Response(image, media_type="image/svg+xml",
                    headers={**_HEADERS, "Cache-Control": "private, max-age=86400"})  # fmt: skip
