"""`create_app(settings)` builds the FastAPI app; nothing runs at import time."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI

from app import __version__
from app.api import admin, health, problems, signals, wellknown
from app.api import docs as api_docs
from app.api import federation as federation_api
from app.api import feeds as feeds_api
from app.api import log as log_api
from app.api import oprf as oprf_api
from app.api import roster as roster_api
from app.api import taxii as taxii_api
from app.api.fastmatch import MatchFastPath
from app.api.limits import BodyLimit
from app.api.overlimit import RefuseOverLimit
from app.console import install as _console_install
from app.observability import Observe
from app.services import log as exchange_log
from app.services.background import Background
from app.services.federation import Federation
from app.services.index_sync import IndexSync
from app.services.node import Node, open_node
from app.services.oprf import OprfService
from app.settings import Settings, get_settings

log = logging.getLogger("signet")

DESCRIPTION = """Signet node API. Platforms submit and match signals and send feedback;
operators manage keys and peers; auditors read the signed exchange log.

Every error is an RFC 9457 problem+json naming the field and the reason."""


def create_app(
    settings: Settings | None = None,
    *,
    node: Node | None = None,
    peer_clients: Mapping[str, httpx.Client] | None = None,
) -> FastAPI:
    """`peer_clients` (base URL -> httpx client) lets tests run several nodes in one process."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        the_node = node or open_node(settings)
        if node is None:  # a real start (tests inject their node): log config changes
            exchange_log.log_config_if_changed(the_node)
        sync = IndexSync(the_node)
        sync.load()
        the_node.after_commit.append(sync.refresh)
        sync.start()
        federation = Federation(the_node, clients=peer_clients)
        the_node.after_commit.append(federation.changed)
        background = Background(the_node, federation)
        oprf = OprfService(the_node, federation.client)
        oprf.log_keys_if_changed()
        app.state.oprf = oprf
        if settings.background:
            background.start()
            federation.start()
        app.state.node = the_node
        app.state.federation = federation
        log.info("node %s ready (%s)", settings.origin, the_node.verifier_key)
        try:
            yield
        finally:
            federation.stop()
            oprf.close()
            background.stop()
            sync.stop()
            if node is None:
                the_node.db.dispose()

    app = FastAPI(
        title="Signet",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # Served from packaged assets by app.api.docs, not from a CDN.
        docs_url=None,
        redoc_url=None,
        openapi_tags=[
            {"name": "signals", "description": "Publish, read and retract signals."},
            {"name": "match", "description": "Match uploads and accounts at upload time."},
            {"name": "feedback", "description": "Verdicts on signals."},
            {"name": "admin", "description": "Operator: API keys and peers."},
            {"name": "health", "description": "Liveness and readiness."},
        ],
    )
    problems.install(app)
    api_docs.install(app)
    app.include_router(health.router)
    app.include_router(signals.router)
    app.include_router(admin.router)
    app.include_router(wellknown.router)
    app.include_router(federation_api.router)
    app.include_router(log_api.router)
    app.include_router(feeds_api.router)
    app.include_router(taxii_api.router)
    app.include_router(oprf_api.router)
    app.include_router(roster_api.router)
    # Innermost: answers the plain upload-time matches ahead of the router (app/api/fastmatch.py).
    app.add_middleware(MatchFastPath)
    _console_install(app)  # /console: operator and auditor pages (app/console/)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    # Added last, so it runs first: an over-limit key is refused before anything reads its body.
    app.add_middleware(RefuseOverLimit)
    # Outermost, added after RefuseOverLimit: request id and metrics cover every answer.
    app.add_middleware(Observe)
    _add_item_schemas(app)
    return app


def _add_item_schemas(app: FastAPI) -> None:
    """Publish the item models of batch endpoints, which are validated one item at a time."""
    from fastapi.openapi.utils import get_openapi

    from app.schemas import MatchQuery, SignalIn

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (SignalIn, MatchQuery):
                item = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(item.pop("$defs", {}))
                components[model.__name__] = item
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
