"""The web console at `/console`: operator and auditor pages served by the node itself.

Server-rendered (Jinja2), readable without JavaScript; the only scripts are the node's own
static files (the auditor's in-browser verifier, `static/audit.js`). Every action goes
through the same services as the API (`app/services/*`), so it is logged the same way.

    session.py   API key -> sealed session cookie; CSRF tokens
    security.py  security headers and CSP for every /console response
    stats.py     read-only figures for the overview (through `app/storage/console.py`)
    charts.py    server-rendered SVG bar charts (no JavaScript needed)
    router.py    the pages
"""

from __future__ import annotations

from app.console.router import install

__all__ = ["install"]
