"""Two real nodes keep federating across a key rotation with no manual step: A rotates its key
and restarts; B meets records (and requests) under the new key, fetches A's descriptor,
verifies the rotation record (signed by the old and the new key), re-pins, logs it, keeps the
sharing policy, and goes on syncing both ways. A forged key (no rotation record) is not
followed: B shows it in `last_error`, in `peers list` and in metrics, and `peers set-key`
re-pins it by hand."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_federation_e2e import PDQ, key, matches, nodes, wait_for

pytestmark = pytest.mark.e2e

PDQ2 = PDQ[:-4] + "0f0f"
PDQ3 = PDQ[:-4] + "f0f0"


def submit(p, auth, value: str) -> None:  # type: ignore[no-untyped-def]
    r = httpx.post(
        p.url + "/v1/signals",
        headers=auth,
        json={"signals": [{"type": "pdq", "value": value, "quality": 100, "categories": ["csam"]}]},
    )
    assert r.status_code in (200, 201), r.text
    assert r.json()["items"][0]["status"] == "created", r.text


def peer_row(p, origin: str) -> dict:  # type: ignore[no-untyped-def]
    out = p.cli("peers", "list", "--json").stdout
    return next(
        json.loads(line) for line in out.splitlines() if json.loads(line)["origin"] == origin
    )


def test_peers_follow_a_key_rotation(tmp_path: Path) -> None:
    with nodes(tmp_path, "rot-a.test", "rot-b.test") as (a, b):
        a.start()
        b.start()
        ka = a.cli("key", "show").stdout.strip()
        kb = b.cli("key", "show").stdout.strip()
        b.cli("peers", "add", a.url, "--key", ka, "--policy", "categories=csam;tlp=green,amber")
        a.cli("peers", "add", b.url, "--key", kb)
        sub_a, match_b = key(a, "submit"), key(b, "match")
        submit(a, sub_a, PDQ)
        wait_for(lambda: bool(matches(b, match_b, "pdq", PDQ)), 30)
        policy_before = peer_row(b, "rot-a.test")["policy"]

        # Rotate A's key (the operator's one step) and restart A so it signs with the new key.
        a.stop()
        rotated = a.cli("key", "rotate")
        new_ka = rotated.stdout.strip()
        assert new_ka != ka and new_ka.startswith("rot-a.test+")
        a.start()
        descriptor = httpx.get(a.url + "/.well-known/signet").json()
        assert descriptor["verifier_key"] == new_ka
        assert [r["new_key"] for r in descriptor["rotations"]] == [new_ka]

        # New records from A, signed with the new key, reach B with no manual step.
        submit(a, sub_a, PDQ2)
        wait_for(lambda: bool(matches(b, match_b, "pdq", PDQ2)), 40)
        row = peer_row(b, "rot-a.test")
        assert row["verifier_key"] == new_ka
        assert row["policy"] == policy_before  # re-pinning never changes the policy
        with b.db() as db:
            kinds = [r[0] for r in db.execute("SELECT kind FROM log_entry ORDER BY idx")]
        assert "peer.key_rotated" in kinds
        # And the other direction: A's signed pulls from B verify under the re-pinned key.
        sub_b, match_a = key(b, "submit"), key(a, "match")
        submit(b, sub_b, PDQ3)
        wait_for(lambda: bool(matches(a, match_a, "pdq", PDQ3)), 40)

        # A key change with no rotation record (A lost its key): not followed, shown, and
        # re-pinned by hand with `peers set-key`.
        a.stop()
        data_a = Path(a.env["SIGNET_DATA_DIR"])
        (data_a / "node.key").unlink()
        a.start()  # a fresh key, with no rotation record from the old one
        lost_ka = httpx.get(a.url + "/.well-known/signet").json()["verifier_key"]
        assert lost_ka != new_ka
        submit(a, sub_a, PDQ[:-4] + "aaaa")
        b.cli("sync", "rot-a.test", check=False)
        # Two failures take turns in last_error: A's requests to B not verifying, and the follow
        # that then finds no rotation record. Wait for the follow's verdict to show.
        wait_for(
            lambda: "no verified rotation" in (peer_row(b, "rot-a.test")["last_error"] or ""), 30
        )
        assert peer_row(b, "rot-a.test")["verifier_key"] == new_ka  # never followed
        listed = b.cli("peers", "list").stdout
        assert "pinned key" in listed  # the error shows, whole (not cut) when piped
        scrape = {
            "Authorization": "Bearer "
            + b.cli("api-keys", "create", "--name", "prom", "--scopes", "metrics").stdout.strip()
        }
        text = httpx.get(b.url + "/metrics", headers=scrape, timeout=10).text
        assert 'signet_peer_verification_failures_total{peer="rot-a.test"' in text
        assert 'signet_peer_key_repins_total{how="rotation",peer="rot-a.test"} 1.0' in text
        b.cli("peers", "set-key", "rot-a.test", lost_ka)
        row = peer_row(b, "rot-a.test")
        assert row["verifier_key"] == lost_ka and row["policy"] == policy_before
        b.cli("sync", "rot-a.test")
        wait_for(lambda: bool(matches(b, match_b, "pdq", PDQ[:-4] + "aaaa")), 30)
