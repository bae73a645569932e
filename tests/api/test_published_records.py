"""What this node publishes, every peer accepts: each record `POST /v1/signals` signs passes the
full peer-side check (`records.check` -> `validate.check_signal`) and verifies.

The bulk path signs bodies built from prepared items without re-running that check per record
(`records.sign_prepared_signal`, docs/scaling.md), so this test is what holds the two in step:
every accepted input of the canonical-form vectors, under every audience, with indicators,
explicit validity and an `audience.exclude` list (a removed peer)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from app.crypto.keys import VerifierKey
from app.crypto.records import verify_record
from app.services import records
from app.services.node import Node
from app.storage.models import PeerRow, SignalRow
from app.storage.types import utcnow

VECTORS = Path(__file__).resolve().parents[2] / "spec" / "vectors" / "canonical.json"

AUDIENCES: list[dict[str, Any]] = [
    {},
    {"audience": {"tlp": "clear"}},
    {"audience": {"tlp": "green", "hops": 3}},
    {"audience": {"tlp": "amber", "peers": ["zeta.example", "alpha.example"]}},
    {"audience": {"tlp": "red"}},
]


def accepted_inputs() -> list[dict[str, Any]]:
    return [v["input"] for v in json.loads(VECTORS.read_text()) if "output" in v]


def test_every_published_record_passes_the_peer_side_check(
    client: Any, node: Node, auth: dict[str, str]
) -> None:
    with node.db.write() as session:  # a removed peer: green records name it in exclude
        session.add(
            PeerRow(
                origin="gone.example",
                url="https://gone.example",
                verifier_key="gone.example+00000000+AAAA",
                policy={},
                removed_at=utcnow(),
            )
        )
    inputs = accepted_inputs()
    assert len(inputs) >= 10
    until = (utcnow() + timedelta(days=30)).isoformat()
    items = []
    for i, audience in enumerate(AUDIENCES):
        for item in inputs:
            extra: dict[str, Any] = {
                "categories": ["sextortion", "csam"],
                "indicators": ["secrecy_request", "age_probe"] if i % 2 else [],
                "confidence": 10 * i,
                "reviewed": bool(i % 2),
                "opinion": "positive" if i % 2 else "investigation_seed",
            }
            if i == 2:
                extra["valid_until"] = until
            items.append({**item, **extra, **audience})
    # One batch per audience: the same value under another audience is a duplicate.
    created = 0
    for start in range(0, len(items), len(inputs)):
        r = client.post(
            "/v1/signals", headers=auth, json={"signals": items[start : start + len(inputs)]}
        )
        assert r.status_code == 200, r.text
        assert r.json()["rejected"] == 0, r.json()
        created += r.json()["created"]
    assert created == len(inputs)  # the first batch created each value once
    key = VerifierKey.parse(node.verifier_key)
    with node.db.read() as session:
        rows = list(session.execute(select(SignalRow)).scalars())
    assert len(rows) == len(inputs)
    excluded = 0
    for row in rows:
        records.check(node, row.record)  # raises RecordInvalid if a peer would refuse it
        verify_record(row.record, lambda _origin: key)
        excluded += row.record["audience"].get("exclude") == ["gone.example"]
    assert excluded == len(inputs)  # green by default: the removed peer is named


def test_every_audience_and_option_passes_the_check(
    client: Any, node: Node, auth: dict[str, str]
) -> None:
    """Each audience and option on values of its own (no duplicates in the way)."""
    items = []
    for i, audience in enumerate(AUDIENCES):
        items.append(
            {
                "type": "md5",
                "value": f"{i + 1:032x}",
                "categories": ["csam"],
                "indicators": ["gift_offer"],
                "confidence": 99,
                "reviewed": True,
                "valid_until": (utcnow() + timedelta(days=400)).isoformat(),
                **audience,
            }
        )
        items.append(
            {
                "type": "pdq",
                "value": f"{i + 1:016x}" * 4,
                "quality": 40,
                "allow_low_quality": True,
                "categories": ["ncii"],
                **audience,
            }
        )
    r = client.post("/v1/signals", headers=auth, json={"signals": items})
    assert r.status_code == 200 and r.json()["created"] == len(items), r.text
    with node.db.read() as session:
        for row in session.execute(select(SignalRow)).scalars():
            records.check(node, row.record)
