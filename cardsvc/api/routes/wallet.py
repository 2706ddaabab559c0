"""The demo wallet page: static HTML and JS served by the issuer (no CDN, no build step).

The page holds a device key in the browser (WebCrypto, non-extractable, kept in
IndexedDB), activates an e-card with a one-time code and shows refreshing QR tokens,
talking only to the e-card endpoints the way a phone app would.
"""

from __future__ import annotations

import html
from functools import cache
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from cardsvc.api.deps import ServicesDep

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
async def wallet_page(services: ServicesDep) -> HTMLResponse:
    # Device proofs sign the issuer's public URL (htu), which may differ from the address
    # the browser used: the page is told it.
    issuer = html.escape(services.settings.issuer.rstrip("/"), quote=True)
    body = _asset("wallet.html").replace("{{ISSUER}}", issuer)
    return HTMLResponse(body, headers=_HEADERS)


@router.get("/wallet/wallet.js")
async def wallet_script() -> Response:
    return Response(_asset("wallet.js"), media_type="text/javascript", headers=_HEADERS)


@router.get("/wallet/wallet.css")
async def wallet_style() -> Response:
    return Response(_asset("wallet.css"), media_type="text/css", headers=_HEADERS)
