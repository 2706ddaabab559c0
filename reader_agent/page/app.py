"""The counter page's app factory: one app per configuration, no global state.

Routes are thin: the desk (:mod:`reader_agent.page.desk`) does the card work, the link
(:mod:`reader_agent.page.link`) keeps up with the issuer, and every error is answered as
RFC 9457 problem+json in the clerk's words (:mod:`reader_agent.page.words`), never a 500
for bad input, in the request's language (the ``cardsvc_lang`` cookie the page's switch
sets, else ``Accept-Language``, else zh-CN: :func:`wording.negotiate`). The page and
``/i18n/{lang}.json`` (the catalogue the page's script reads) are rendered from the same
catalogues (:mod:`wording`). The PIN is a ``SecretStr`` from the moment it is parsed,
passed to the card and dropped; validation errors never echo input back.
"""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Body, FastAPI, Query, Request
from fastapi import Path as FastApiPath
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, WithJsonSchema
from pydantic_core import PydanticCustomError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from cardsvc.core.errors import CoreError
from cardsvc.core.pairing import MAX_TEXT as ACTIVATION_TEXT_MAX
from cardsvc.core.pairing import parse_activation_text
from cardsvc.core.transaction import Kind
from reader_agent.cache import AgentCache
from reader_agent.clerks import ClerkStore
from reader_agent.errors import AgentError
from reader_agent.issuer import IssuerClient
from reader_agent.journal import JournalRecord
from reader_agent.page.books import Books
from reader_agent.page.clerk import DEFAULT_IDLE, Clerks
from reader_agent.page.clerk_texts import clerk_words
from reader_agent.page.desk import Desk, DeskError, DeskSettings
from reader_agent.page.hub import Hub
from reader_agent.page.link import Link
from reader_agent.page.qr import PURPOSES, verify_qr
from reader_agent.page.security import MAX_BODY, LocalOnly
from reader_agent.page.views import Receipt, yuan
from reader_agent.page.words import Words, explain, problem_words, verdict_words
from wording import (
    COOKIE,
    Message,
    benefit,
    catalogue_json,
    money,
    negotiate,
    render_html,
    text,
)
from wording import script as i18n_js

__all__ = ["PageConfig", "create_app"]

PROBLEM_JSON = "application/problem+json"
#: Only the page's own files: no inline script, no other origin.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True, kw_only=True)
class PageConfig:
    """Everything the page needs to know; the issuer client comes separately (it holds
    the terminal's key)."""

    state_dir: Path
    cache_dir: Path
    port: int = 8100
    desk: DeskSettings = field(default_factory=DeskSettings)
    probe_every: float = 5.0  # seconds between issuer probes (and syncs)
    #: While online, the bundle is refreshed when its status is older than this (s): a
    #: delta, or a 304 when nothing changed. Keeps checks within the 30 s online limit.
    cache_every: float = 15.0
    watch_wait: float = 0.25  # longest block in SCardGetStatusChange per watcher round
    #: None: a fresh random token per process (pages from before a restart must reload).
    csrf_token: str | None = None
    #: Seconds a request body has to arrive in full (408 after): a stalled client holds
    #: no request open longer.
    body_timeout: float = 10.0
    #: The terminal's name as the clerk and the receipts show it (the terminal's
    #: certificate carries only its client id); empty: "this counter" in the page's words.
    terminal_name: str = ""
    #: A clerk with no request for this long is signed out (the page is cleared).
    clerk_idle: timedelta = DEFAULT_IDLE
    #: Collections and payments need a clerk signed in (their name goes on the receipt
    #: and to the issuer). False only for a counter page without the sign-in form.
    require_clerk: bool = True


# -- request bodies -----------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PinIn(_Body):
    pin: SecretStr = Field(min_length=1, max_length=32)
    allow_last_try: bool = False


class CollectIn(_Body):
    entitlement_id: uuid.UUID
    amount_fen: int = Field(ge=1, le=1_000_000_000)


class PayIn(_Body):
    amount_fen: int = Field(ge=1, le=1_000_000_000)
    reference: str = Field(pattern=r"^[A-Za-z0-9._:/-]{1,64}$")


def _purpose_name(value: str) -> str:
    if value not in PURPOSES:  # read as "not one of the choices" (counter.invalid.choice)
        raise PydanticCustomError("literal_error", "one of {expected}",
                                  {"expected": ", ".join(PURPOSES)})  # fmt: skip
    return value


class QrIn(_Body):
    text: str = Field(min_length=1, max_length=8192)
    purpose: Annotated[
        str,
        AfterValidator(_purpose_name),
        WithJsonSchema({"type": "string", "enum": list(PURPOSES)}),
    ]


class EmptyIn(_Body):
    pass


class SignInIn(_Body):
    client_id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    password: SecretStr = Field(min_length=1, max_length=256)


class LookupIn(_Body):
    citizen_id: SecretStr = Field(min_length=1, max_length=32)


class LossIn(_Body):
    #: False: a temporary loss report (suspends; the card can be resumed); True: a formal
    #: loss report (revoked for good).
    formal: bool = False


class DeviceJwkIn(_Body):
    """The phone's public key (EC P-256): a private member (``d``) is refused here, so a
    private key never leaves the counter."""

    model_config = ConfigDict(extra="forbid")

    kty: Literal["EC"]
    crv: Literal["P-256"]
    x: str = Field(pattern=r"^[A-Za-z0-9_-]{43}$")
    y: str = Field(pattern=r"^[A-Za-z0-9_-]{43}$")
    kid: str | None = Field(default=None, max_length=128)
    alg: Literal["ES256"] | None = None
    use: Literal["sig"] | None = None


class CounterActivationIn(_Body):
    """The phone's public key: the text of the wallet's "activate at the counter" QR code
    (``text``, as the scanner types it or the clerk pastes it), or its JWK."""

    text: str | None = Field(default=None, min_length=1, max_length=ACTIVATION_TEXT_MAX)
    device_jwk: DeviceJwkIn | None = None


_CARD_NUMBER = r"^[A-Za-z0-9]{1,32}$"


# -- problems -----------------------------------------------------------------------------


def lang_of(request: Request) -> str:
    """The language of a request: cookie, then Accept-Language, then zh-CN."""
    return negotiate(cookie=request.cookies.get(COOKIE),
                     accept_language=request.headers.get("accept-language"))  # fmt: skip


def _problem(words: Words, request: Request) -> JSONResponse:
    return JSONResponse(words.problem(lang_of(request)), status_code=words.status,
                        media_type=PROBLEM_JSON)  # fmt: skip


async def _agent_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, DeskError):
        return _problem(exc.words, request)
    return _problem(explain(exc), request)


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    # Only where and what: never the input (it may be a PIN).
    safe = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")),
             "type": str(e.get("type", ""))} for e in errors]  # fmt: skip
    technical = "; ".join(f"{'.'.join(e['loc'][1:]) or 'body'}: {e['msg']}" for e in safe[:5])
    return _problem(problem_words(422, "invalid-input", fields=invalid_fields(safe[:5]),
                                  extra={"errors": safe[:20], "technical": technical}),
                    request)  # fmt: skip


#: The request fields the clerk can name (``counter.field.NAME``); a device key's parts
#: read as the phone's key.
_FIELDS = frozenset({
    "pin", "allow_last_try", "entitlement_id", "amount_fen", "reference", "text", "purpose",
    "client_id", "password", "citizen_id", "formal", "device_jwk", "card_number", "seq",
    "limit", "person_id", "body",
})  # fmt: skip
_KEY_PARTS = frozenset({"kty", "crv", "x", "y", "kid", "alg", "use", "d"})
#: pydantic's error types by what they mean to the clerk (``counter.invalid.KIND``).
_KINDS = {
    "missing": "missing", "string_too_long": "too-long", "too_long": "too-long",
    "string_too_short": "too-short", "too_short": "too-short",
    "string_pattern_mismatch": "pattern", "int_parsing": "number", "int_type": "number",
    "int_from_float": "number", "float_parsing": "number", "greater_than_equal": "range",
    "less_than_equal": "range", "greater_than": "range", "less_than": "range",
    "uuid_parsing": "uuid", "uuid_type": "uuid", "extra_forbidden": "extra",
    "literal_error": "choice", "enum": "choice", "json_invalid": "json",
    "string_type": "type", "bool_type": "type", "bool_parsing": "type", "dict_type": "type",
    "model_type": "type", "model_attributes_type": "type", "value_error": "other",
}


def _field(loc: list[str]) -> Message:
    # loc: ("body" | "path" | "query", name, ...); the deepest name the clerk knows.
    names = [part for part in loc[1:] if not part.isdigit()]
    if (names and names[0] == "device_jwk") or any(name in _KEY_PARTS for name in names):
        return Message("counter.field.device_jwk")
    name = names[0] if names else "body"
    return Message(f"counter.field.{name}" if name in _FIELDS else "counter.field.other")


def invalid_fields(errors: list[dict[str, Any]]) -> Message:
    """Which inputs are wrong and how, in the clerk's words (``金额：超出允许范围；…``),
    from pydantic's errors (their English messages stay in the technical detail)."""
    parts = [
        Message("counter.invalid.part", {
            "field": _field(e["loc"]),
            "problem": Message(f"counter.invalid.{_KINDS.get(e['type'], 'other')}"),
        })
        for e in errors
    ] or [Message("counter.invalid.part", {"field": Message("counter.field.body"),
                                            "problem": Message("counter.invalid.other")})]
    joined = parts[-1]
    for part in reversed(parts[:-1]):
        joined = Message("common.list-join", {"first": part, "rest": joined})
    return joined  # fmt: skip


_HTTP_TITLES = frozenset({404, 405, 408, 413})


def _http_error(body_timeout: float) -> Callable[[Request, Exception], Any]:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        status = exc.status_code if isinstance(exc, StarletteHTTPException) else 400
        base = f"counter.problem.http.{status if status in _HTTP_TITLES else 'other'}"
        details = {
            408: Message("counter.problem.too-slow.detail", {"seconds": f"{body_timeout:g}"}),
            413: Message("counter.problem.too-large.detail", {"limit": MAX_BODY}),
        }
        words = Words(status=status, code=f"http-{status}", title=Message(f"{base}.title"),
                      detail=details.get(status, Message(f"{base}.title")),
                      next=Message("counter.problem.http.next"))  # fmt: skip
        return _problem(words, request)

    return handle


@cache
def _asset(name: str) -> str:
    return resources.files("reader_agent.page").joinpath("static", name).read_text("utf-8")


_I18N_HEADERS = {**_HEADERS, "Cache-Control": "no-cache"}

#: The cookie that remembers the page's mode (the switch sets it); its values are the
#: page's ``data-mode``: ``care`` is the mode for the elderly (关怀模式), large text.
MODE_COOKIE = "cardsvc_counter_mode"


def page_mode(cookie: str | None) -> str:
    """``care`` only when this browser chose it, else ``standard``."""
    return "care" if cookie == "care" else "standard"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def create_app(
    config: PageConfig,
    *,
    issuer: IssuerClient,
    clock: Callable[[], datetime] = _utcnow,
    background: bool = True,
) -> FastAPI:
    """Build the counter page app. With ``background`` (the default) its lifespan starts
    the reader watcher and the issuer link; without, it serves the page and API only
    (tests of the API that need no card reader)."""
    cache_ = AgentCache(config.cache_dir)
    books = Books(config.state_dir, terminal_id=issuer.client_id)
    csrf = config.csrf_token or secrets.token_urlsafe(32)
    hub_ref: list[Hub] = []

    def changed() -> None:
        if hub_ref:
            hub_ref[0].publish()

    link = Link(issuer=issuer, books=books, cache=cache_, clock=clock, changed=changed,
                probe_every=config.probe_every, cache_every=config.cache_every)  # fmt: skip
    desk = Desk(settings=config.desk, cache=cache_, issuer=issuer, books=books, clock=clock,
                changed=changed, after_transaction=link.wake, status_limit=link.status_limit,
                terminal_name=config.terminal_name)  # fmt: skip
    clerks = Clerks(store=ClerkStore(config.state_dir), issuer_url=issuer.base_url, clock=clock,
                    end_customer=lambda: _quietly(desk.end_customer), changed=changed,
                    idle=config.clerk_idle)  # fmt: skip

    def build(lang: str) -> dict[str, Any]:
        return {"terminal": issuer.client_id, "terminal_name": config.terminal_name,
                "issuer": issuer.base_url, **desk.view(lang), "clerk": clerks.view(),
                "link": link.state.to_json()}  # fmt: skip

    hub = Hub(build)
    hub_ref.append(hub)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        from reader_agent.page.watcher import Watcher  # imports pyscard

        watcher = Watcher(desk.on_readers, wait=config.watch_wait) if background else None
        stop_idle = threading.Event()
        idle = threading.Thread(target=_sign_out_idle, args=(clerks, stop_idle),
                                name="clerk idle", daemon=True)  # fmt: skip
        idle.start()  # no card or issuer work: also without the background threads
        if watcher is not None:
            watcher.start()
            link.start()
        try:
            yield
        finally:
            hub.close()
            stop_idle.set()
            idle.join(5)
            if watcher is not None:
                watcher.stop()
                link.stop()
            await run_in_threadpool(_quietly, desk.end_customer)

    app = FastAPI(title="cardsvc counter", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)  # fmt: skip
    app.state.desk = desk
    app.state.link = link
    app.state.hub = hub
    app.state.clerks = clerks
    app.add_exception_handler(AgentError, _agent_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http_error(config.body_timeout))

    @app.get("/", response_class=HTMLResponse)
    async def page(request: Request) -> HTMLResponse:
        body = (render_html(_asset("counter.html"), lang_of(request))
                .replace("{{CSRF}}", csrf)
                .replace("{{MODE}}", page_mode(request.cookies.get(MODE_COOKIE))))  # fmt: skip
        return HTMLResponse(body, headers={**_HEADERS, "Vary": "Cookie, Accept-Language"})

    @app.get("/i18n/{lang}.json")
    async def catalogue(lang: str) -> JSONResponse:
        # An unknown language answers zh-CN's catalogue (with "lang": "zh-CN").
        return JSONResponse(catalogue_json(lang), headers=_I18N_HEADERS)

    @app.get("/static/i18n.js")
    async def i18n_script() -> Response:
        return Response(i18n_js(), media_type="text/javascript", headers=_HEADERS)

    @app.get("/static/counter.js")
    async def script() -> Response:
        return Response(_asset("counter.js"), media_type="text/javascript", headers=_HEADERS)

    @app.get("/static/counter.css")
    async def style() -> Response:
        return Response(_asset("counter.css"), media_type="text/css", headers=_HEADERS)

    @app.get("/api/state")
    async def state(request: Request) -> JSONResponse:
        await run_in_threadpool(clerks.current)  # an idle clerk is signed out first
        return JSONResponse(hub.snapshot(lang_of(request)), headers={"Cache-Control": "no-store"})

    # -- the clerk ---------------------------------------------------------------------

    @app.post("/api/clerk/sign-in")
    async def sign_in(body: SignInIn, request: Request) -> JSONResponse:
        lang = lang_of(request)
        secret = body.password.get_secret_value()
        _shift, detail = await run_in_threadpool(
            lambda: clerks.sign_in(body.client_id, secret, lang)
        )
        title = text(lang, "clerk.signin.done.title")
        return JSONResponse({"clerk": clerks.view(), "title": title, "detail": detail})

    @app.post("/api/clerk/sign-out")
    async def sign_out(_body: Annotated[EmptyIn, Body()], request: Request) -> JSONResponse:
        lang = lang_of(request)
        was = await run_in_threadpool(lambda: clerks.sign_out(reason=None))
        return JSONResponse({"signed_out": was, "title": text(lang, "clerk.signout.done.title"),
                             "detail": text(lang, "clerk.signout.done.detail"),
                             "state": hub.snapshot(lang)})  # fmt: skip

    @app.post("/api/persons/lookup")
    async def look_up(body: LookupIn, request: Request) -> JSONResponse:
        lang = lang_of(request)
        shift = clerks.require(lang)
        citizen_id = body.citizen_id.get_secret_value()
        found = await run_in_threadpool(lambda: clerks.look_up(shift, citizen_id, lang))
        return JSONResponse(found)

    @app.post("/api/persons/{person_id}/ecard-activation-codes")
    async def activation_code(
        person_id: uuid.UUID, _body: Annotated[EmptyIn, Body()], request: Request
    ) -> JSONResponse:
        lang = lang_of(request)
        shift = clerks.require(lang)
        issued = await run_in_threadpool(lambda: clerks.issue_code(shift, str(person_id), lang))
        return JSONResponse(issued, status_code=201)

    @app.post("/api/ecards/counter-activation")
    async def counter_activation(body: CounterActivationIn, request: Request) -> JSONResponse:
        lang = lang_of(request)
        shift = clerks.require(lang)
        # The phone's key is read before the card is asked anything: a wrong code costs
        # the holder nothing (the PIN stays verified).
        if (body.text is None) == (body.device_jwk is None):
            raise DeskError(clerk_words("ecard.qr-missing", status=422))
        if body.text is not None:
            try:
                key = parse_activation_text(body.text)
            except CoreError as exc:
                raise DeskError(clerk_words("ecard.qr-invalid", status=422,
                                            extra={"technical": exc.detail})) from None  # fmt: skip
            jwk = {name: value for name, value in key.jwk().items() if name not in ("kid", "alg")}
        else:
            assert body.device_jwk is not None  # noqa: S101 - checked above
            jwk = body.device_jwk.model_dump(exclude_none=True)
        activated = await run_in_threadpool(
            lambda: clerks.activate_ecard(shift, desk.chip_answer, jwk, lang)
        )
        return JSONResponse(activated, status_code=201)

    @app.post("/api/cards/{card_number}/resume")
    async def resume(
        card_number: Annotated[str, FastApiPath(pattern=_CARD_NUMBER)],
        _body: Annotated[EmptyIn, Body()], request: Request,
    ) -> JSONResponse:  # fmt: skip
        lang = lang_of(request)
        shift = clerks.require(lang)
        card, title, detail = await run_in_threadpool(
            lambda: clerks.change_status(
                shift, card_number, "resume", lang=lang, proven_card=desk.proven_card()
            )
        )
        return JSONResponse({"card": card, "title": title, "detail": detail})

    @app.post("/api/cards/{card_number}/loss-report")
    async def loss_report(
        card_number: Annotated[str, FastApiPath(pattern=_CARD_NUMBER)], body: LossIn,
        request: Request,
    ) -> JSONResponse:  # fmt: skip
        lang = lang_of(request)
        shift = clerks.require(lang)
        action = "report_loss" if body.formal else "report_temporary_loss"
        card, title, detail = await run_in_threadpool(
            lambda: clerks.change_status(shift, card_number, action, lang=lang, proven_card=None)
        )
        return JSONResponse({"card": card, "title": title, "detail": detail})

    @app.get("/api/events")
    async def events(request: Request) -> StreamingResponse:
        return StreamingResponse(
            hub.stream(lang_of(request)), media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )  # fmt: skip

    @app.post("/api/check")
    async def check(request: Request, _body: Annotated[EmptyIn, Body()]) -> JSONResponse:
        await run_in_threadpool(lambda: desk.check(pin=None, allow_last_try=False))
        return JSONResponse(hub.snapshot(lang_of(request)))

    @app.post("/api/pin")
    async def pin(request: Request, body: PinIn) -> JSONResponse:
        secret = body.pin.get_secret_value()
        result = await run_in_threadpool(
            lambda: desk.check(pin=secret, allow_last_try=body.allow_last_try)
        )
        snapshot = hub.snapshot(lang_of(request))
        if result.genuine and snapshot["check"] and snapshot["check"]["pin_verified"]:
            return JSONResponse(snapshot)
        meaning, advice = verdict_words(result.verdict)
        tries = result.pin_tries_left
        pin_problem = result.verdict.value.startswith("pin") or result.genuine
        raise DeskError(problem_words(
            422, f"check-{result.verdict.value}",
            key="pin-rejected" if pin_problem else "card-rejected",
            meaning=meaning, advice=advice,
            tries=Message("counter.pin.tries-sentence", {"tries": tries})
            if tries is not None and tries > 0 else "",
            extra={"verdict": result.verdict.value, "tries_left": tries},
        ))  # fmt: skip

    @app.get("/api/entitlements")
    async def entitlements(request: Request) -> JSONResponse:
        lang = lang_of(request)
        identity = desk.identity()
        items = await run_in_threadpool(lambda: issuer.open_entitlements(identity.card_number))
        desk.remember_entitlements(identity.card_number,
                                   {i.id: {"benefit": i.benefit, "period": i.period}
                                    for i in items})  # fmt: skip
        out = [
            {"id": i.id, "benefit": i.benefit, "period": i.period, "amount_fen": i.amount_fen,
             "amount_yuan": yuan(i.amount_fen), "label": benefit(i.benefit, i.period, lang),
             "amount": money(i.amount_fen, lang)}
            for i in items
        ]  # fmt: skip
        return JSONResponse({"card_number": identity.card_number, "items": out})

    def clerk_for_transaction(request: Request) -> tuple[str, str] | None:
        """The clerk in whose name the card signs (refused when nobody is signed in and
        the counter requires a clerk)."""
        lang = lang_of(request)
        if config.require_clerk:
            shift = clerks.require(lang)
            return shift.client_id, shift.name
        shift_ = clerks.current()
        return (shift_.client_id, shift_.name) if shift_ is not None else None

    @app.post("/api/collect")
    async def collect(body: CollectIn, request: Request) -> JSONResponse:
        clerk = clerk_for_transaction(request)
        receipt = await run_in_threadpool(
            lambda: desk.transact(kind=Kind.BENEFIT, amount_fen=body.amount_fen,
                                  entitlement=body.entitlement_id, reference=None,
                                  clerk=clerk)
        )
        return JSONResponse({"receipt": receipt.to_json()})

    @app.post("/api/pay")
    async def pay(body: PayIn, request: Request) -> JSONResponse:
        clerk = clerk_for_transaction(request)
        receipt = await run_in_threadpool(
            lambda: desk.transact(kind=Kind.FEE, amount_fen=body.amount_fen, entitlement=None,
                                  reference=body.reference, clerk=clerk)
        )
        return JSONResponse({"receipt": receipt.to_json()})

    @app.post("/api/qr")
    async def qr(request: Request, body: QrIn) -> JSONResponse:
        text = body.text.strip()
        outcome = await run_in_threadpool(lambda: verify_qr(issuer, text, body.purpose))
        return JSONResponse(outcome.to_json(lang_of(request)))

    # -- receipts from the journal ---------------------------------------------------------

    def reprint(record: JournalRecord) -> dict[str, Any]:
        return Receipt.from_record(record, hall=config.desk.hall, reprint=True,
                                   terminal_name=config.terminal_name).to_json()  # fmt: skip

    @app.get("/api/receipts")
    async def receipts(
        request: Request,
        card_number: Annotated[str | None, Query(pattern=r"^[A-Z0-9]{9}$")] = None,
        limit: Annotated[int, Query(ge=1, le=50)] = 20,
    ) -> JSONResponse:
        lang = lang_of(request)
        clerks.require(lang)
        records = await run_in_threadpool(
            lambda: books.signed_records(card_number=card_number, limit=limit)
        )
        items = [reprint(r) for r in records]
        return JSONResponse({"items": items})

    @app.get("/api/receipts/{seq}")
    async def receipt(
        seq: Annotated[int, FastApiPath(ge=1, le=2**53)], request: Request
    ) -> JSONResponse:
        lang = lang_of(request)
        clerks.require(lang)
        record = await run_in_threadpool(lambda: books.signed_record(seq))
        if record is None:
            raise DeskError(clerk_words("receipt.not-found", status=404, seq=seq))
        return JSONResponse(
            {"receipt": reprint(record)}
        )

    @app.post("/api/done")
    async def done(request: Request, _body: Annotated[EmptyIn, Body()]) -> JSONResponse:
        await run_in_threadpool(desk.end_customer)
        return JSONResponse(hub.snapshot(lang_of(request)))

    @app.post("/api/sync")
    async def sync_now(_body: Annotated[EmptyIn, Body()]) -> JSONResponse:
        link.wake()
        return JSONResponse({"requested": True}, status_code=202)

    app.add_middleware(LocalOnly, port=config.port, csrf_token=csrf,
                       body_timeout=config.body_timeout)  # fmt: skip
    return app


def _sign_out_idle(clerks: Clerks, stop: threading.Event) -> None:
    """Signs an idle clerk out (and clears the page) within a second of the timeout, even
    when no request comes."""
    while not stop.wait(1.0):
        with suppress(Exception):  # a bad moment must not end the thread
            clerks.current()


def _quietly(work: Callable[[], None]) -> None:
    with suppress(AgentError):
        work()
