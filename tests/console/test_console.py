"""The console over HTTP (TestClient), on SQLite and PostgreSQL: sign-in, sessions, CSRF,
security headers, scopes, and the operator actions going through the same services (and
log entries) as the API."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from app.services import apikeys
from app.services.node import Node
from app.storage import log as log_store

from .helpers import csrf_of, post_form, sign_in

PAGES = [
    "/console/",
    "/console/signals",
    "/console/peers",
    "/console/keys",
    "/console/audit",
    "/console/audit/log",
    "/console/audit/report",
]


def _key(node: Node, *scopes: str) -> str:
    return apikeys.create(node, "console-test", list(scopes)).key


def _submit(client: Any, auth: dict[str, str], value: str = "0" * 32) -> str:
    r = client.post(
        "/v1/signals",
        json={"signals": [{"type": "md5", "value": value, "categories": ["csam"]}]},
        headers=auth,
    )
    assert r.status_code == 200, r.text
    return str(r.json()["items"][0]["id"])


def _log_kinds(node: Node) -> list[str]:
    with node.db.read() as session:
        size = log_store.log_size(session)
        return [r.kind for r in log_store.entries(session, 0, size)]


def test_pages_need_sign_in(client: Any) -> None:
    for path in PAGES:
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/console/login")
    assert client.get("/console/audit/data/checkpoint").status_code == 401


def test_sign_in_sets_strict_http_only_cookie_and_every_page_renders(
    client: Any, node: Node
) -> None:
    r = sign_in(client, _key(node, "admin"))
    cookie = r.headers["set-cookie"]
    assert "signet_session=" in cookie
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain http on loopback
    for path in PAGES:
        page = client.get(path)
        assert page.status_code == 200, (path, page.text[:300])
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
        assert "frame-ancestors 'none'" in csp
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert page.headers["cache-control"] == "no-store"
        assert "<script>" not in page.text  # no inline script anywhere


def test_cookie_is_secure_behind_tls(make_settings: Callable[..., Any]) -> None:
    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.services.node import open_node

    settings = make_settings(public_url="https://node.example")
    node = open_node(settings)
    try:
        with TestClient(create_app(settings, node=node), base_url="https://testserver") as c:
            r = sign_in(c, _key(node, "read"))
            assert "Secure" in r.headers["set-cookie"]
            assert "strict-transport-security" in c.get("/console/").headers
    finally:
        node.db.dispose()


def test_bad_key_refused_and_no_open_redirect(client: Any, node: Node) -> None:
    page = client.get("/console/login")
    r = client.post(
        "/console/login",
        data={"csrf": csrf_of(page.text), "api_key": "sgn_nope", "next": "/console/"},
    )
    assert r.status_code == 401
    page = client.get("/console/login")
    r = client.post(
        "/console/login",
        data={"csrf": csrf_of(page.text), "api_key": _key(node, "read"), "next": "//evil.example/"},
        follow_redirects=False,
    )
    assert r.headers["location"] == "/console/"


def test_forged_session_cookie_is_no_session(client: Any) -> None:
    client.cookies.set("signet_session", "A" * 80, path="/console")
    r = client.get("/console/", follow_redirects=False)
    assert r.status_code == 303


def test_post_without_csrf_is_refused_and_logged(
    client: Any, node: Node, auth: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    sign_in(client, _key(node, "admin"))
    uid = _submit(client, auth)
    before = _log_kinds(node)
    with caplog.at_level(logging.WARNING, logger="signet.console"):
        r = client.post(f"/console/signals/{uid}/retract", data={"reason": "x"})
    assert r.status_code == 403
    assert "CSRF" in r.text
    assert any("CSRF" in rec.getMessage() for rec in caplog.records)
    r = client.post(f"/console/signals/{uid}/retract", data={"reason": "x", "csrf": "forged"})
    assert r.status_code == 403
    assert _log_kinds(node) == before  # nothing happened
    assert client.get(f"/v1/signals/{uid}", headers=auth).json()["status"] == "active"


def test_login_itself_needs_csrf(client: Any, node: Node) -> None:
    r = client.post("/console/login", data={"api_key": _key(node, "admin")})
    assert r.status_code == 403
    assert "signet_session" not in r.headers.get("set-cookie", "")


def test_retract_from_console_is_logged_like_the_api(
    client: Any, node: Node, auth: dict[str, str]
) -> None:
    sign_in(client, _key(node, "admin"))
    uid = _submit(client, auth)
    r = post_form(
        client, f"/console/signals/{uid}", f"/console/signals/{uid}/retract", {"reason": "mistake"}
    )
    assert r.status_code == 303
    got = client.get(f"/v1/signals/{uid}", headers=auth).json()
    assert got["status"] == "retracted" and got["retract_reason"] == "mistake"
    assert _log_kinds(node)[-1] == "retraction"
    page = client.get(f"/console/signals/{uid}")
    assert "retracted" in page.text and "signed retraction verifies" in page.text


def test_signal_page_shows_record_verification_and_search(
    client: Any, node: Node, auth: dict[str, str]
) -> None:
    sign_in(client, _key(node, "read"))
    uid = _submit(client, auth, "ab" * 16)
    page = client.get(f"/console/signals/{uid}")
    assert "verifies under the key of test.example" in page.text
    found = client.get("/console/signals", params={"q": "abab"})
    assert uid in found.text
    assert uid not in client.get("/console/signals", params={"q": "ffff"}).text
    assert uid in client.get("/console/signals", params={"type": "md5", "status": "active"}).text


def test_scopes_decide_pages_and_actions(client: Any, node: Node, auth: dict[str, str]) -> None:
    uid = _submit(client, auth)
    sign_in(client, _key(node, "read"))
    assert client.get("/console/peers").status_code == 403
    assert client.get("/console/keys").status_code == 403
    assert client.get("/console/audit").status_code == 403
    page = client.get(f"/console/signals/{uid}")
    assert "Retract" not in page.text  # no submit scope: no form
    r = client.post(
        f"/console/signals/{uid}/retract", data={"csrf": csrf_of(page.text), "reason": "x"}
    )
    assert r.status_code == 403
    assert client.get(f"/v1/signals/{uid}", headers=auth).json()["status"] == "active"


def test_api_key_created_once_and_revoking_ends_its_session(
    client: Any, node: Node, settings: Any
) -> None:
    from fastapi.testclient import TestClient

    from app.main import create_app

    sign_in(client, _key(node, "admin"))
    r = post_form(client, "/console/keys", "/console/keys", {"name": "auditor", "scopes": "audit"})
    assert r.status_code == 200
    new_key = r.text.split('id="new-key" class="key">', 1)[1].split("<", 1)[0]
    assert new_key.startswith("sgn_")
    assert new_key not in client.get("/console/keys").text  # shown once only
    assert _log_kinds(node)[-1] == "apikey.created"
    with TestClient(create_app(settings, node=node)) as other:
        sign_in(other, new_key)
        assert other.get("/console/audit").status_code == 200
        key_id = next(k.id for k in apikeys.list_keys(node) if k.name == "auditor")
        r = post_form(client, "/console/keys", f"/console/keys/{key_id}/revoke", {})
        assert r.status_code == 303
        assert _log_kinds(node)[-1] == "apikey.revoked"
        r = other.get("/console/audit", follow_redirects=False)
        assert r.status_code == 303  # back to sign-in: the session died with the key


def test_bad_form_input_is_a_reason_not_a_crash(client: Any, node: Node) -> None:
    sign_in(client, _key(node, "admin"))
    r = post_form(client, "/console/keys", "/console/keys", {"name": "x", "scopes": "bogus"})
    assert r.status_code == 400 and "unknown scope" in r.text
    r = post_form(
        client, "/console/peers", "/console/peers", {"url": "ftp://x", "verifier_key": "nope"}
    )
    assert r.status_code == 400
    r = post_form(client, "/console/peers", "/console/peers/none.example/remove", {})
    assert r.status_code == 404


def test_audit_data_matches_the_auditor_api(client: Any, node: Node, auth: dict[str, str]) -> None:
    for i in range(3):
        _submit(client, auth, f"{i:032x}")
    audit = {"Authorization": f"Bearer {_key(node, 'audit')}"}
    sign_in(client, _key(node, "audit"))
    note = client.get("/console/audit/data/checkpoint").text
    assert note == client.get("/v1/log/checkpoint", headers=audit).text
    size = int(note.split("\n")[1])
    assert (
        client.get(f"/console/audit/data/entries?start=0&end={size}").json()
        == client.get(f"/v1/log/entries?start=0&end={size}", headers=audit).json()
    )
    assert (
        client.get(f"/console/audit/data/inclusion?index=1&size={size}").json()
        == client.get(f"/v1/log/proof/inclusion?index=1&size={size}", headers=audit).json()
    )
    r = client.get("/console/audit/data/entries?start=x&end=1")
    assert r.status_code == 400 and r.json()["field"] == "start"


def test_console_pages_spend_the_keys_rate_limit(make_settings: Callable[..., Any]) -> None:
    """Before, a signed-in browser was not counted: the console was a way around the limit."""
    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.services.node import open_node

    settings = make_settings(rate_limit=10)
    node = open_node(settings)
    try:
        with TestClient(create_app(settings, node=node)) as c:
            sign_in(c, _key(node, "read"))
            codes = [c.get("/console/").status_code for _ in range(30)]
            assert codes[0] == 200
            assert 429 in codes
            refused = c.get("/console/")
            assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    finally:
        node.db.dispose()
