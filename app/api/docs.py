"""API docs served by the node itself: `/docs` (Swagger UI) and `GET /`, a short landing page.

FastAPI's default `/docs` loads Swagger UI from a CDN, which is blank on an isolated network.
The assets here come from the `swagger-ui-bundle` package and are served from `/docs/assets`,
so the docs render with no outside host.
"""

from __future__ import annotations

import html

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from app import __version__

ASSETS = "/docs/assets"


def install(app: FastAPI) -> None:
    """Serve Swagger UI and its assets; call with `FastAPI(docs_url=None, redoc_url=None)`."""
    from swagger_ui_bundle import swagger_ui_path

    app.mount(ASSETS, StaticFiles(directory=swagger_ui_path), name="swagger-ui-assets")
    app.include_router(router)


router = APIRouter(include_in_schema=False)


@router.get("/docs")
def swagger_ui() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="Signet API",
        swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
        oauth2_redirect_url="/docs/oauth2-redirect",
    )


@router.get("/docs/oauth2-redirect")
def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/")
def home(request: Request) -> HTMLResponse:
    """Who this node is and where its docs are; nothing secret (the verifier key is public)."""
    node = request.app.state.node
    origin = html.escape(node.origin)
    key = html.escape(node.verifier_key)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Signet node {origin}</title></head>
<body style="font-family: sans-serif; max-width: 44rem; margin: 2rem auto">
<h1>Signet node {origin}</h1>
<p>A node of a Signet federation (signet {html.escape(__version__)}).</p>
<ul>
<li><a href="/docs">API documentation</a> (<a href="/openapi.json">OpenAPI</a>)</li>
<li><a href="/.well-known/signet">Signed node descriptor</a></li>
<li><a href="/healthz">Health</a></li>
</ul>
<p>Verifier key: <code>{key}</code></p>
</body></html>
"""
    return HTMLResponse(page)
