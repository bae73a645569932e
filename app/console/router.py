"""The console's pages. Thin, like the API routers: parse the form -> service -> page.

Reading pages are plain GETs. Every state change is a POST of an
`application/x-www-form-urlencoded` form carrying the CSRF token, answered with a redirect
(303, post/redirect/get) or, on a refused input, the page again with the reason (4xx).
Authorisation is the API key's: each page names the scope it needs (`admin` allows all).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from app import __version__
from app.console import charts, stats
from app.console.security import PREFIX, ConsoleHeaders
from app.console.session import (
    CSRF_COOKIE,
    CSRF_FIELD,
    SESSION_COOKIE,
    SESSION_SECONDS,
    Sealer,
    derive_secret,
)
from app.crypto._encoding import b64encode
from app.errors import AuthError, Forbidden, InvalidInput, NotFound, SignetError, Unauthenticated
from app.schemas import FeedbackIn
from app.services import apikeys, feedback, peers, ratelimit, signals
from app.services import log as exchange_log
from app.services.apikeys import Caller
from app.services.node import Node
from app.services.peers import PeerIn
from app.signals.vocab import Verdict
from app.storage.types import utcnow

log = logging.getLogger("signet.console")

HERE = Path(__file__).parent
MAX_FORM_BYTES = 64 * 1024
LOG_PAGE = 100

router = APIRouter(prefix=PREFIX, include_in_schema=False)

_env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["pretty"] = lambda v: json.dumps(v, indent=2, sort_keys=True, ensure_ascii=False)
_env.filters["policy"] = lambda d: _policy_text(d)
_env.filters["when"] = lambda v: v.strftime("%Y-%m-%d %H:%M:%S") if v else "—"


def _policy_text(policy: dict[str, Any]) -> str:
    """A stored policy in the form the policy field takes back (`*` = all)."""
    from app.federation.audience import SharingPolicy

    try:
        return str(SharingPolicy.from_dict(policy))
    except SignetError:
        return json.dumps(policy)


def install(app: FastAPI) -> None:
    """Mount the console on the app: pages, static files, security headers."""
    app.include_router(router)
    app.mount(PREFIX + "/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.add_middleware(ConsoleHeaders)


# --- request context ---------------------------------------------------------------------------


@dataclass
class Ctx:
    """What every page needs: the node, the signed-in caller (if any) and the CSRF token."""

    request: Request
    node: Node
    sealer: Sealer
    caller: Caller | None
    api_key: str | None
    csrf_cookie: str
    new_csrf_cookie: bool
    cookies: list[tuple[str, str, int]] = field(default_factory=list)

    @property
    def csrf(self) -> str:
        return self.sealer.csrf_token(self.csrf_cookie)

    def allows(self, scope: str) -> bool:
        return self.caller is not None and self.caller.allows(scope)


def _sealer(request: Request) -> Sealer:
    sealer: Sealer | None = getattr(request.app.state, "console_sealer", None)
    if sealer is None:
        sealer = Sealer(derive_secret(request.app.state.node.key))
        request.app.state.console_sealer = sealer
    return sealer


def _secure(request: Request, node: Node) -> bool:
    # Behind TLS (directly, or a proxy uvicorn trusts for X-Forwarded-Proto), or a node
    # whose public URL is https: the cookies are then sent over TLS only.
    return request.url.scheme == "https" or node.settings.public_url.startswith("https://")


def _context(request: Request) -> Ctx:
    node: Node = request.app.state.node
    sealer = _sealer(request)
    csrf_cookie = request.cookies.get(CSRF_COOKIE) or ""
    new = not csrf_cookie or len(csrf_cookie) > 100
    if new:
        csrf_cookie = sealer.new_csrf_cookie()
    session = sealer.open(request.cookies.get(SESSION_COOKIE))
    caller = None
    if session is not None:
        try:
            caller = apikeys.identify(node, session.api_key)
        except AuthError:
            caller = None  # revoked since sign-in: the session ends with the key
    if caller is not None:
        # A signed-in browser spends its key's requests like any client of the API (the
        # same per-key bucket, shared by every worker): the console is no way around
        # SIGNET_RATE_LIMIT. RateLimited becomes a 429 with Retry-After (app/api/problems.py).
        limiter = ratelimit.for_db(node.db, node.settings.rate_limit)
        if limiter is not None and not limiter.take_local(caller.id):
            limiter.take_shared(caller.id)
    return Ctx(
        request,
        node,
        sealer,
        caller,
        session.api_key if caller and session else None,
        csrf_cookie,
        new,
    )


def _finish(ctx: Ctx, response: Response) -> Response:
    secure = _secure(ctx.request, ctx.node)
    if ctx.new_csrf_cookie:
        response.set_cookie(
            CSRF_COOKIE,
            ctx.csrf_cookie,
            path=PREFIX,
            httponly=True,
            samesite="strict",
            secure=secure,
        )
    for name, value, max_age in ctx.cookies:
        if max_age <= 0:
            response.delete_cookie(
                name, path=PREFIX, httponly=True, samesite="strict", secure=secure
            )
        else:
            response.set_cookie(
                name,
                value,
                max_age=max_age,
                path=PREFIX,
                httponly=True,
                samesite="strict",
                secure=secure,
            )
    return response


def _render(ctx: Ctx, template: str, status: int = 200, **values: Any) -> Response:
    html = _env.get_template(template).render(
        ctx=ctx,
        caller=ctx.caller,
        csrf=ctx.csrf,
        csrf_field=CSRF_FIELD,
        origin=ctx.node.origin,
        verifier_key=ctx.node.verifier_key,
        version=__version__,
        path=ctx.request.url.path,
        **values,
    )
    return _finish(ctx, HTMLResponse(html, status_code=status))


def _redirect(ctx: Ctx, to: str) -> Response:
    return _finish(ctx, RedirectResponse(to, status_code=303))


class _Refused(Exception):
    """Stop a page: answer `response` instead (sign-in redirect, 403 page)."""

    def __init__(self, response: Response) -> None:
        self.response = response


def _need(ctx: Ctx, scope: str) -> Caller:
    if ctx.caller is None:
        raise _Refused(_redirect(ctx, f"{PREFIX}/login?next={quote(ctx.request.url.path)}"))
    if not ctx.caller.allows(scope):
        raise _Refused(
            _render(
                ctx,
                "error.html",
                403,
                title="Forbidden",
                message=f"This API key lacks the '{scope}' scope.",
            )
        )
    return ctx.caller


def _page(scope: str | None) -> Callable[[Callable[..., Response]], Callable[..., Any]]:
    """Decorate a GET page: build the context, check the scope, turn errors into pages."""

    def wrap(fn: Callable[..., Response]) -> Callable[..., Any]:
        def handler(request: Request) -> Response:
            ctx = _context(request)
            try:
                if scope is not None:
                    _need(ctx, scope)
                return fn(ctx, **request.path_params)
            except _Refused as r:
                return r.response
            except NotFound as exc:
                return _render(ctx, "error.html", 404, title="Not found", message=str(exc))
            except InvalidInput as exc:
                return _render(ctx, "error.html", 400, title="Invalid input", message=str(exc))
            except SignetError as exc:
                return _render(ctx, "error.html", 409, title="Refused", message=str(exc))

        handler.__name__ = fn.__name__
        return handler

    return wrap


async def _form(request: Request, ctx: Ctx) -> dict[str, str]:
    """The posted form, after the CSRF check. Urlencoded only (no multipart parser needed)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise _Refused(
            _render(
                ctx,
                "error.html",
                415,
                title="Unsupported form",
                message="Forms are posted urlencoded.",
            )
        )
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise _Refused(
            _render(
                ctx, "error.html", 413, title="Form too large", message="The form is too large."
            )
        )
    parsed = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    form = {k: v[-1] for k, v in parsed.items()}
    form["__all__"] = json.dumps(parsed)  # multi-valued fields (checkboxes), read via _many
    if not ctx.sealer.check_csrf(request.cookies.get(CSRF_COOKIE), form.get(CSRF_FIELD)):
        log.warning(
            "console: refused a %s to %s without a valid CSRF token",
            request.method,
            request.url.path,
        )
        raise _Refused(
            _render(
                ctx,
                "error.html",
                403,
                title="Refused",
                message="The form's CSRF token is missing or wrong. Reload the page and try again.",
            )
        )
    return form


def _many(form: dict[str, str], name: str) -> list[str]:
    values: list[str] = json.loads(form["__all__"]).get(name, [])
    return values


def _action(scope: str | None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a POST: context, CSRF-checked form, scope; domain errors become the reason."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        async def handler(request: Request) -> Response:
            ctx = _context(request)
            try:
                form = await _form(request, ctx)
                if scope is not None:
                    _need(ctx, scope)
                result: Response = await run_in_threadpool(fn, ctx, form, **request.path_params)
                return result
            except _Refused as r:
                return r.response
            except SignetError as exc:
                status = (
                    404 if isinstance(exc, NotFound) else 403 if isinstance(exc, Forbidden) else 400
                )
                return _render(ctx, "error.html", status, title="Refused", message=str(exc))

        handler.__name__ = fn.__name__
        return handler

    return wrap


# --- sign-in -----------------------------------------------------------------------------------


@router.get("/login")
def login_page(request: Request) -> Response:
    ctx = _context(request)
    return _render(ctx, "login.html", next=_safe_next(request.query_params.get("next")))


def _safe_next(value: str | None) -> str:
    # Only paths inside the console: never an open redirect to another site.
    if (
        value
        and value.startswith(PREFIX + "/")
        and not value.startswith("//")
        and "\\" not in value
    ):
        return value
    return PREFIX + "/"


@router.post("/login")
async def login(request: Request) -> Response:
    ctx = _context(request)
    try:
        form = await _form(request, ctx)
    except _Refused as r:
        return r.response
    key = form.get("api_key", "").strip()
    try:
        caller = await run_in_threadpool(apikeys.identify, ctx.node, key)
    except Unauthenticated:
        log.warning("console: sign-in refused (unknown or revoked key)")
        return _render(
            ctx,
            "login.html",
            401,
            error="Unknown or revoked API key.",
            next=_safe_next(form.get("next")),
        )
    log.info("console: sign-in by API key %d (%s)", caller.id, caller.name)
    ctx.cookies.append((SESSION_COOKIE, ctx.sealer.seal(key), SESSION_SECONDS))
    return _redirect(ctx, _safe_next(form.get("next")))


@router.post("/logout")
async def logout(request: Request) -> Response:
    ctx = _context(request)
    try:
        await _form(request, ctx)
    except _Refused as r:
        return r.response
    ctx.cookies.append((SESSION_COOKIE, "", 0))
    return _redirect(ctx, PREFIX + "/login")


# --- overview ----------------------------------------------------------------------------------


@router.get("/")
@_page("read")
def overview(ctx: Ctx) -> Response:
    figures = stats.overview(ctx.node, days=30)
    day_list = charts.days(utcnow().date(), 30)
    return _render(
        ctx,
        "overview.html",
        title="Overview",
        figures=figures,
        chart_type=charts.hbar(figures.by_type, "Signals by type"),
        chart_category=charts.hbar(figures.by_category, "Signals by category"),
        chart_status=charts.hbar(figures.by_status, "Signals by status"),
        chart_tlp=charts.hbar(figures.by_tlp, "Signals by audience (TLP)"),
        chart_signals=charts.timeline(
            {"published": figures.published_per_day, "received": figures.received_per_day},
            day_list,
            "Signals per day",
        ),
        chart_feedback=charts.timeline(
            figures.feedback_per_day, day_list, "Feedback per day by verdict"
        ),
    )


# --- peers -------------------------------------------------------------------------------------


@router.get("/peers")
@_page("admin")
def peers_page(ctx: Ctx) -> Response:
    return _render(
        ctx,
        "peers.html",
        title="Peers",
        peers=peers.list_all(ctx.node, removed=True),
        done=ctx.request.query_params.get("done", ""),
    )


def _federation(ctx: Ctx) -> Any:
    return ctx.request.app.state.federation


@router.post("/peers")
@_action("admin")
def pin_peer(ctx: Ctx, form: dict[str, str]) -> Response:
    try:
        spec = PeerIn(
            url=form.get("url", ""),
            verifier_key=form.get("verifier_key", ""),
            policy=form.get("policy", ""),
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InvalidInput(".".join(str(p) for p in err["loc"]), err["msg"]) from exc
    fed = _federation(ctx)
    out = peers.add(ctx.node, spec, fed.client.descriptor)
    return _redirect(ctx, f"{PREFIX}/peers?done=pinned+{quote(out.origin)}")


@router.post("/peers/{origin}/policy")
@_action("admin")
def peer_policy(ctx: Ctx, form: dict[str, str], origin: str) -> Response:
    peers.set_policy(ctx.node, origin, form.get("policy", ""))
    return _redirect(ctx, f"{PREFIX}/peers?done=policy+{quote(origin)}")


@router.post("/peers/{origin}/remove")
@_action("admin")
def peer_remove(ctx: Ctx, form: dict[str, str], origin: str) -> Response:
    peers.remove(ctx.node, origin)
    return _redirect(ctx, f"{PREFIX}/peers?done=removed+{quote(origin)}")


@router.post("/peers/{origin}/sync")
@_action("admin")
def peer_sync(ctx: Ctx, form: dict[str, str], origin: str) -> Response:
    peers.get(ctx.node, origin)
    r = _federation(ctx).pull(origin)
    note = f"synced {origin}: {r.applied} applied, {r.refused} refused" + (
        f", error: {r.error}" if r.error else ""
    )
    return _redirect(ctx, f"{PREFIX}/peers?done={quote(note)}")


# --- signals -----------------------------------------------------------------------------------


@router.get("/signals")
@_page("read")
def signals_page(ctx: Ctx) -> Response:
    q = ctx.request.query_params
    flt = {k: (q.get(k) or None) for k in ("type", "category", "status", "origin")}
    if flt["status"] not in (None, "active", "retracted", "expired"):
        raise InvalidInput("status", "one of active, retracted, expired")
    search = (q.get("q") or "").strip()
    if search:
        items = stats.search_signals(ctx.node, search)
        nxt = None
    else:
        page = signals.list_page(
            ctx.node,
            type_=flt["type"],
            category=flt["category"],
            status=flt["status"],
            origin=flt["origin"],
            after=q.get("after") or None,
            limit=50,
        )
        items, nxt = page.items, page.next
    return _render(ctx, "signals.html", title="Signals", items=items, next=nxt, flt=flt, q=search)


@router.get("/signals/{signal_id}")
@_page("read")
def signal_page(ctx: Ctx, signal_id: str) -> Response:
    origin = ctx.request.query_params.get("origin") or None
    sig = signals.get(ctx.node, signal_id, origin)
    verified, verify_error = stats.verify_signal_record(ctx.node, sig.record)
    retraction_ok, retraction_error = (None, None)
    if sig.status == "retracted":
        retraction = stats.retraction_record(ctx.node, sig.id, sig.origin)
        if retraction is not None:
            retraction_ok, retraction_error = stats.verify_signal_record(ctx.node, retraction)
    entries: list[Any] = []
    entries_error = None
    if ctx.allows("audit"):
        try:
            found = exchange_log.signal_entries(ctx.node, sig.id)
            entries = [e for e, _ in found.entries]
        except NotFound as exc:
            entries_error = str(exc)
    return _render(
        ctx,
        "signal.html",
        title=f"Signal {sig.id}",
        sig=sig,
        verified=verified,
        verify_error=verify_error,
        retraction_ok=retraction_ok,
        retraction_error=retraction_error,
        feedback_rows=stats.feedback_of(ctx.node, sig.id, sig.origin),
        entries=entries,
        entries_error=entries_error,
        verdicts=[v.value for v in Verdict],
        done=ctx.request.query_params.get("done", ""),
    )


@router.post("/signals/{signal_id}/retract")
@_action("submit")
def signal_retract(ctx: Ctx, form: dict[str, str], signal_id: str) -> Response:
    reason = form.get("reason", "").strip()
    if not reason or len(reason) > 1000:
        raise InvalidInput("reason", "required, at most 1000 characters")
    signals.retract(ctx.node, signal_id, reason)
    return _redirect(ctx, f"{PREFIX}/signals/{quote(signal_id)}?done=retracted")


@router.post("/signals/{signal_id}/feedback")
@_action("feedback")
def signal_feedback(ctx: Ctx, form: dict[str, str], signal_id: str) -> Response:
    assert ctx.caller is not None
    try:
        spec = FeedbackIn.model_validate(
            {
                "signal": signal_id,
                "origin": form.get("origin") or None,
                "verdict": form.get("verdict", ""),
                "reason": form.get("reason") or None,
            }
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InvalidInput(".".join(str(p) for p in err["loc"]), err["msg"]) from exc
    feedback.give(ctx.node, spec, ctx.caller.id)
    origin = f"&origin={quote(form['origin'])}" if form.get("origin") else ""
    return _redirect(ctx, f"{PREFIX}/signals/{quote(signal_id)}?done=feedback{origin}")


# --- API keys ----------------------------------------------------------------------------------


@router.get("/keys")
@_page("admin")
def keys_page(ctx: Ctx) -> Response:
    return _keys(ctx)


def _keys(ctx: Ctx, created: Any = None, status: int = 200, error: str | None = None) -> Response:
    return _render(
        ctx,
        "keys.html",
        status,
        title="API keys",
        keys=apikeys.list_keys(ctx.node),
        scopes=apikeys.SCOPES,
        created=created,
        error=error,
        done=ctx.request.query_params.get("done", ""),
    )


@router.post("/keys")
@_action("admin")
def key_create(ctx: Ctx, form: dict[str, str]) -> Response:
    name = form.get("name", "").strip()
    scopes = _many(form, "scopes")
    if not name or len(name) > 128:
        return _keys(ctx, status=400, error="name: required, at most 128 characters")
    if not scopes:
        return _keys(ctx, status=400, error="scopes: choose at least one")
    created = apikeys.create(ctx.node, name, scopes, form.get("member") == "on")
    # Shown once, in this response only (no redirect: the key must not sit in a URL).
    return _keys(ctx, created=created)


@router.post("/keys/{key_id}/revoke")
@_action("admin")
def key_revoke(ctx: Ctx, form: dict[str, str], key_id: str) -> Response:
    if not key_id.isdigit():
        raise NotFound(f"no API key with id {key_id!r}")
    apikeys.revoke(ctx.node, int(key_id))
    return _redirect(ctx, f"{PREFIX}/keys?done=revoked+{key_id}")


# --- auditor -----------------------------------------------------------------------------------


@router.get("/audit")
@_page("audit")
def audit_page(ctx: Ctx) -> Response:
    note = exchange_log.checkpoint_note(ctx.node)
    return _render(
        ctx, "audit.html", title="Audit", note=note, parsed=stats.describe_checkpoint(note)
    )


@router.get("/audit/log")
@_page("audit")
def audit_log_page(ctx: Ctx) -> Response:
    size = peers.log_size(ctx.node)
    raw = ctx.request.query_params.get("start", "")
    start = int(raw) if raw.isdigit() else max(0, size - LOG_PAGE)
    start = min(start, max(0, size - 1))
    rows = exchange_log.entries_page(ctx.node, start, start + LOG_PAGE) if size else []
    return _render(
        ctx,
        "log.html",
        title="Exchange log",
        rows=[stats.describe_entry(e) for e in rows],
        start=start,
        size=size,
        page=LOG_PAGE,
    )


@router.get("/audit/report")
@_page("audit")
def audit_report_page(ctx: Ctx) -> Response:
    from app.audit import report as transparency

    q = ctx.request.query_params
    rep = transparency.node_report(
        ctx.node, since=q.get("since") or None, until=q.get("until") or None
    )
    return _render(
        ctx,
        "report.html",
        title="Transparency report",
        report=rep,
        report_json=transparency.to_json(rep),
        charts=transparency.charts(rep),
        since=q.get("since", ""),
        until=q.get("until", ""),
    )


# The in-browser verifier's data: the same service calls and JSON shapes as the auditor API
# (`/v1/log/*`), authorised by the console session instead of a bearer header. The browser
# recomputes and checks everything itself; these answers are never taken as a verdict.


def _audit_data(fn: Callable[[Ctx], Response]) -> Callable[[Request], Response]:
    def handler(request: Request) -> Response:
        ctx = _context(request)
        if not ctx.allows("audit"):
            return JSONResponse(
                {"detail": "sign in with a key that has the 'audit' scope"}, status_code=401
            )
        try:
            return fn(ctx)
        except InvalidInput as exc:
            return JSONResponse({"detail": str(exc), "field": exc.field}, status_code=400)
        except NotFound as exc:
            return JSONResponse({"detail": str(exc)}, status_code=404)

    handler.__name__ = fn.__name__
    return handler


def _int(ctx: Ctx, name: str) -> int:
    raw = ctx.request.query_params.get(name, "")
    if not raw.isdigit():
        raise InvalidInput(name, "a non-negative integer is required")
    return int(raw)


@router.get("/audit/data/checkpoint")
@_audit_data
def data_checkpoint(ctx: Ctx) -> Response:
    return PlainTextResponse(exchange_log.checkpoint_note(ctx.node))


@router.get("/audit/data/entries")
@_audit_data
def data_entries(ctx: Ctx) -> Response:
    page = exchange_log.entries_page(ctx.node, _int(ctx, "start"), _int(ctx, "end"))
    return JSONResponse(
        [{"index": e.index, "entry": e.entry, "leaf_hash": b64encode(e.leaf_hash)} for e in page]
    )


@router.get("/audit/data/inclusion")
@_audit_data
def data_inclusion(ctx: Ctx) -> Response:
    index, size = _int(ctx, "index"), _int(ctx, "size")
    leaf, proof = exchange_log.inclusion_proof(ctx.node, index, size)
    return JSONResponse(
        {
            "index": index,
            "size": size,
            "leaf_hash": b64encode(leaf),
            "hashes": [b64encode(h) for h in proof],
        }
    )


@router.get("/audit/data/consistency")
@_audit_data
def data_consistency(ctx: Ctx) -> Response:
    size1, size2 = _int(ctx, "from"), _int(ctx, "to")
    proof = exchange_log.consistency_proof(ctx.node, size1, size2)
    return JSONResponse({"from": size1, "to": size2, "hashes": [b64encode(h) for h in proof]})
