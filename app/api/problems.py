"""RFC 9457 problem+json for every error the API returns.

One handler on the domain base class; starlette finds it through the class hierarchy. A 5xx never
echoes internals: it logs the traceback with a request id and returns only that id.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import errors

log = logging.getLogger("signet.api")

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://signet.dev/problems/"

# Most specific first: the first class the error is an instance of decides.
_TABLE: list[tuple[type[errors.SignetError], int, str, str]] = [
    (errors.InvalidInput, 400, "invalid-input", "Invalid input"),
    (errors.Unauthenticated, 401, "unauthenticated", "Authentication required"),
    (errors.Forbidden, 403, "forbidden", "Forbidden"),
    (errors.NotFound, 404, "not-found", "Not found"),
    (errors.Conflict, 409, "conflict", "Conflict"),
    (errors.VerificationError, 401, "bad-signature", "Signature verification failed"),
    (errors.CryptoError, 400, "crypto-error", "Cryptographic check failed"),
    (errors.FederationError, 400, "federation-error", "Federation protocol error"),
    (errors.ConfigError, 500, "config-error", "Configuration error"),
    (errors.RateLimited, 429, "rate-limited", "Too many requests"),
]


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    type_: str = "about:blank",
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {"type": type_, "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def for_error(exc: errors.SignetError, instance: str | None) -> JSONResponse:
    status = getattr(exc, "status", None)
    for cls, default_status, slug, title in _TABLE:
        if isinstance(exc, cls):
            extra: dict[str, Any] = {}
            if isinstance(exc, errors.InvalidInput):
                extra["errors"] = [{"field": exc.field, "reason": exc.reason}]
                detail = f"{exc.field}: {exc.reason}" if exc.field else exc.reason
            else:
                detail = str(exc)
            code = status if isinstance(status, int) else default_status
            headers = {"WWW-Authenticate": "Bearer"} if code == 401 else None
            if isinstance(exc, errors.RateLimited):
                headers = {"Retry-After": str(exc.retry_after)}
            return problem(
                code,
                title,
                detail,
                type_=TYPE_BASE + slug,
                instance=instance,
                headers=headers,
                **extra,
            )
    return problem(400, "Bad request", str(exc), instance=instance)


def _field(loc: tuple[Any, ...]) -> str:
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "body"


def install(app: FastAPI) -> None:
    @app.exception_handler(errors.SignetError)
    async def _domain(request: Request, exc: errors.SignetError) -> JSONResponse:
        if isinstance(exc, errors.AuthError | errors.VerificationError):
            log.warning("refused %s %s: %s", request.method, request.url.path, exc)
        return for_error(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        items = []
        for err in exc.errors():
            reason = err.get("msg", "invalid")
            if err.get("type") == "json_invalid":
                reason = "malformed JSON: " + str(err.get("ctx", {}).get("error", reason))
            elif err.get("type") == "extra_forbidden":
                reason = "unknown field"
            elif err.get("type") == "missing":
                reason = "required"
            items.append({"field": _field(tuple(err.get("loc", ()))), "reason": reason})
        status = 400 if any(e.get("type") == "json_invalid" for e in exc.errors()) else 422
        detail = "; ".join(f"{i['field']}: {i['reason']}" for i in items[:5])
        return problem(
            status,
            "Malformed JSON" if status == 400 else "Invalid request",
            detail,
            type_=TYPE_BASE + ("malformed-json" if status == 400 else "invalid-request"),
            instance=request.url.path,
            errors=items,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        titles = {404: "Not found", 405: "Method not allowed", 413: "Request too large"}
        return problem(
            exc.status_code,
            titles.get(exc.status_code, "HTTP error"),
            str(exc.detail),
            instance=request.url.path,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        request_id = uuid.uuid4().hex[:16]
        log.error(
            "unhandled error, request %s: %s %s",
            request_id,
            request.method,
            request.url.path,
            exc_info=exc,
        )
        return problem(
            500,
            "Internal error",
            f"The node could not complete the request; quote request id {request_id}.",
            instance=request.url.path,
            request_id=request_id,
        )
