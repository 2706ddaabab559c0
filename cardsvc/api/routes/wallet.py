"""The demo wallet page: static HTML and JS served by the issuer (no CDN, no build step).

The page holds a device key in the browser (WebCrypto, non-extractable, kept in
IndexedDB), activates an e-card with a one-time code and shows refreshing QR tokens,
talking only to the e-card endpoints the way a phone app would. Its words are the
catalogues of :mod:`wording`: the page is rendered in the browser's language (the
``cardsvc_lang`` cookie its 中文 / English switch sets, else ``Accept-Language``, else
zh-CN) and its script reads the same catalogue from ``/wallet/i18n/{lang}.json``.
"""

from __future__ import annotations

import html
from functools import cache
from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from cardsvc.api.deps import ServicesDep
from wording import COOKIE, catalogue_json, negotiate, render_html, script

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


@cache
def _asset(name: str) -> str:
    return resources.files("cardsvc.api").joinpath("static", name).read_text("utf-8")


@router.get("/wallet", response_class=HTMLResponse)
async def wallet_page(request: Request, services: ServicesDep) -> HTMLResponse:
    # Device proofs sign the issuer's public URL (htu), which may differ from the address
    # the browser used: the page is told it.
    issuer = html.escape(services.settings.issuer.rstrip("/"), quote=True)
    lang = negotiate(cookie=request.cookies.get(COOKIE),
                     accept_language=request.headers.get("accept-language"))  # fmt: skip
    body = render_html(_asset("wallet.html"), lang).replace("{{ISSUER}}", issuer)
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
