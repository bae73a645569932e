"""Sign in to the console the way a browser does: read the form's CSRF token, post the key."""

from __future__ import annotations

import re
from typing import Any

CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    m = CSRF_RE.search(html)
    assert m, "no CSRF token in the page"
    return m.group(1)


def sign_in(client: Any, key: str) -> Any:
    page = client.get("/console/login")
    r = client.post(
        "/console/login",
        data={"csrf": csrf_of(page.text), "api_key": key, "next": "/console/"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    return r


def post_form(client: Any, page_path: str, action: str, data: dict[str, str]) -> Any:
    """GET the page the form is on, then post the form with its token."""
    page = client.get(page_path)
    assert page.status_code == 200, page.text
    return client.post(action, data={"csrf": csrf_of(page.text), **data}, follow_redirects=False)
