"""The scanner page (``/scan``): a camera reads e-card QR codes and the page verifies them
offline with ``@cardsvc/verify``, installable and usable with no network (a web app
manifest and a service worker scoped to ``/scan``).

The hand-written files are in ``static/`` (``scan.html``, ``scan.css``, ``scan-sw.js``,
``scan-icon.svg``); the script with its QR decoder, the verifier bundle and the decoder's
WebAssembly are built by ``js/scan/build.mjs`` into ``settings.scanner_dir`` (nothing
built is committed). While they are missing every ``/scan`` file answers the
``scanner-not-built`` problem (503), never a 500.

The page's config is the issuer's root public key (the trust root the bundles are signed
under): the page pins the first one it sees. Words as on the wallet: the page is rendered
in the browser's language and its script reads ``/scan/i18n/{lang}.json``.
"""

from __future__ import annotations

import hashlib
import html
import json
from functools import cache
from importlib import resources
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from cardsvc.api.deps import ServicesDep
from cardsvc.errors import ScannerNotBuiltError
from wording import COOKIE, catalogue_json, negotiate, render_html, script, text

router = APIRouter(tags=["scanner"], include_in_schema=False)

#: Only the page's own files; WebAssembly (the QR decoder) compiled from /scan only.
_CSP = (
    "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; "
    "img-src 'self'; media-src 'self' blob: mediastream:; connect-src 'self'; "
    "worker-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
    "Permissions-Policy": "camera=(self)",
}
#: The built files and their media types.
BUILT = {
    "scan.min.js": "text/javascript",
    "cardsvc-verify.min.js": "text/javascript",
    "zxing_reader.wasm": "application/wasm",
}


@cache
def _asset(name: str) -> str:
    return resources.files("cardsvc.api").joinpath("static", name).read_text("utf-8")


def _built(services: ServicesDep, name: str) -> Path:
    path = services.settings.scanner_dir / name
    if not path.is_file():
        raise ScannerNotBuiltError(name)
    return path


def _version(services: ServicesDep) -> str:
    """Changes whenever any file the service worker caches changes."""
    digest = hashlib.sha256()
    for name in BUILT:
        digest.update(_built(services, name).read_bytes())
    for name in ("scan.html", "scan.css", "scan-sw.js", "scan-icon.svg"):
        digest.update(_asset(name).encode())
    digest.update(script().encode())
    digest.update(json.dumps([catalogue_json(lang) for lang in ("zh-CN", "en")]).encode())
    return digest.hexdigest()[:16]


def _lang(request: Request) -> str:
    return negotiate(cookie=request.cookies.get(COOKIE),
                     accept_language=request.headers.get("accept-language"))  # fmt: skip


@router.get("/scan", response_class=HTMLResponse)
async def scan_page(request: Request, services: ServicesDep) -> HTMLResponse:
    _built(services, "scan.min.js")
    jwk = services.keys.root_key().jwk()
    root = {k: jwk[k] for k in ("kty", "crv", "x", "y")}
    body = render_html(_asset("scan.html"), _lang(request)).replace(
        "{{ROOT}}", html.escape(json.dumps(root, separators=(",", ":")), quote=True)
    )
    return HTMLResponse(body, headers={**_HEADERS, "Vary": "Cookie, Accept-Language"})


@router.get("/scan/manifest.webmanifest")
async def scan_manifest(request: Request) -> Response:
    lang = _lang(request)
    manifest = {
        "name": text(lang, "scan.page.title"),
        "short_name": text(lang, "scan.page.short-name"),
        "lang": lang,
        "start_url": "/scan",
        "scope": "/scan",
        "display": "standalone",
        "background_color": "#eef2f6",
        "theme_color": "#1f5fa8",
        "icons": [{"src": "/scan/icon.svg", "sizes": "any", "type": "image/svg+xml"}],
    }
    return Response(json.dumps(manifest, ensure_ascii=False),
                    media_type="application/manifest+json", headers=_HEADERS)  # fmt: skip


@router.get("/scan/sw.js")
async def scan_service_worker(services: ServicesDep) -> Response:
    body = _asset("scan-sw.js").replace("{{VERSION}}", _version(services))
    # Served from /scan/ but controls /scan itself.
    headers = {**_HEADERS, "Service-Worker-Allowed": "/scan"}
    return Response(body, media_type="text/javascript", headers=headers)


@router.get("/scan/scan.css")
async def scan_style() -> Response:
    return Response(_asset("scan.css"), media_type="text/css", headers=_HEADERS)


@router.get("/scan/icon.svg")
async def scan_icon() -> Response:
    return Response(_asset("scan-icon.svg"), media_type="image/svg+xml", headers=_HEADERS)


@router.get("/scan/i18n.js")
async def scan_i18n_script() -> Response:
    return Response(script(), media_type="text/javascript", headers=_HEADERS)


@router.get("/scan/i18n/{lang}.json")
async def scan_catalogue(lang: str) -> JSONResponse:
    return JSONResponse(catalogue_json(lang), headers=_HEADERS)


def _serve_built(name: str) -> None:
    async def serve(services: ServicesDep) -> Response:
        body = _built(services, name).read_bytes()
        return Response(body, media_type=BUILT[name], headers=_HEADERS)

    router.add_api_route(f"/scan/{name}", serve, methods=["GET"], name=f"scan {name}")


for _name in BUILT:
    _serve_built(_name)
