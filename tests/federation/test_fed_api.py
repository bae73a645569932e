"""Pins the public surface of app/federation and keeps its protocol modules pure."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from app.errors import FederationError
from app.federation import audience, errors, httpsig, pages, sfv

PACKAGE = Path(__file__).parents[2] / "app" / "federation"


def test_public_api_is_pinned() -> None:
    assert set(httpsig.__all__) == {
        "ALGORITHM",
        "MAX_VALIDITY_SECONDS",
        "Headers",
        "KeyResolver",
        "MemoryNonceCache",
        "NonceCache",
        "Signer",
        "Verifier",
        "VerifiedRequest",
        "content_digest",
        "sign_request",
        "signature_base",
        "verify_content_digest",
        "verify_request",
    }
    assert set(audience.__all__) == {
        "MAX_HOPS",
        "Decision",
        "RecordMeta",
        "SharingPolicy",
        "Tlp",
        "is_origin",
        "may_accept",
        "may_send",
    }
    assert set(pages.__all__) == {
        "MAX_CHECKPOINT_CHARS",
        "MAX_PAGE_BYTES",
        "MAX_PAGE_RECORDS",
        "Notify",
        "RecordEnvelope",
        "RecordsPage",
    }
    for module in (httpsig, audience, pages, sfv, errors):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_every_protocol_error_has_a_status() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert isinstance(cls.status, int) and 400 <= cls.status < 600
        if name != "InvalidPolicy":
            assert issubclass(cls, FederationError)


@pytest.mark.parametrize(
    "path", sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "client.py")
)
def test_protocol_modules_do_no_io(path: str) -> None:
    tree = ast.parse((PACKAGE / path).read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"fastapi", "starlette", "sqlmodel", "sqlalchemy", "httpx", "requests"}
