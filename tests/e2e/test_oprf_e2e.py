"""Threshold OPRF with real processes: three key-holder nodes and platforms A and B (2-of-3).

An email OPRF-hashed through A's node matches the same email submitted through B's node; no
node's database or log, and no byte of the network traffic between them (every node is reached
through a recording relay), holds the email or anything computable from it alone (its normal
form, its SHA-256, its hash-to-group point); a holder with a wrong share is refused and named; a
member over its budget gets 429.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from pathlib import Path

import httpx
import pytest

from app.crypto import oprf
from app.signals.identifiers import oprf_message
from tests.e2e.capture import Capture
from tests.e2e.node_proc import SIGNET
from tests.e2e.test_federation_e2e import Proc, key, nodes, wait_for

pytestmark = pytest.mark.e2e

EMAIL = "Sam.Synthetic+shop@GoogleMail.com"
NORMAL = "samsynthetic@gmail.com"
HOLDERS = ["h1.test", "h2.test", "h3.test"]
EPOCH = "oprf-2026"


def _hash(p: Proc, api_key: str, value: str) -> subprocess.CompletedProcess[str]:
    env = {**p.env, "SIGNET_URL": p.url, "SIGNET_API_KEY": api_key}
    return subprocess.run(
        [SIGNET, "identifier", "hash", "--oprf", "--type", "email", "--json", value],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


# The recording relay's sockets may be collected after the test's nodes are gone.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_three_holders_two_platforms(tmp_path: Path) -> None:
    good, rogue = tmp_path / "ceremony", tmp_path / "rogue"
    with nodes(tmp_path, "a.test", "b.test", *HOLDERS) as procs:
        a, b, *holders = procs
        cer = a.cli(
            "identifier", "ceremony", "--epoch", EPOCH, "--threshold", "2",
            *[x for h in HOLDERS for x in ("--holder", h)], "--out", str(good),
        )  # fmt: skip
        epoch_file = cer.stdout.split()[0]
        # A second ceremony under the same epoch id: h1 is given a share of the wrong key.
        a.cli(
            "identifier", "ceremony", "--epoch", EPOCH, "--threshold", "2",
            *[x for h in HOLDERS for x in ("--holder", h)], "--out", str(rogue),
        )  # fmt: skip
        for h in holders:
            src = rogue if h.origin == "h1.test" else good
            h.env["SIGNET_OPRF_SHARE_FILES"] = str(src / f"{EPOCH}.{h.origin}.share.json")
            h.env["SIGNET_OPRF_HOLDER_LIMIT"] = "40"
        for m in (a, b):
            m.env["SIGNET_OPRF_EPOCH_FILES"] = epoch_file
        # Budgets chosen so the checks below do not depend on how fast this machine is: a
        # batch larger than a whole minute's budget is refused however long the test took.
        a.env["SIGNET_OPRF_KEY_LIMIT"] = "20"
        b.env["SIGNET_OPRF_KEY_LIMIT"] = "1000"
        # Every node is reached only through a recording relay: the traffic capture.
        captures = []
        for p in procs:
            cap = Capture(int(p.env["SIGNET_PORT"]))
            captures.append(cap)
            p.env["SIGNET_PUBLIC_URL"] = p.url = cap.url
            p.env["SIGNET_LOG_LEVEL"] = "info"
            p.start()
        vkeys = {p.origin: p.cli("key", "show").stdout.strip() for p in procs}
        for m in (a, b):
            for h in holders:
                m.cli("peers", "add", h.url, "--key", vkeys[h.origin])
                h.cli("peers", "add", m.url, "--key", vkeys[m.origin])
        a.cli("peers", "add", b.url, "--key", vkeys["b.test"])
        b.cli("peers", "add", a.url, "--key", vkeys["a.test"])
        ka, kb = (key(m, "submit,match,read")["Authorization"][7:] for m in (a, b))

        # Platform A hashes the email through its node and submits the signal.
        r = _hash(a, ka, EMAIL)
        assert r.returncode == 0, r.stderr
        signal = json.loads(r.stdout)
        assert signal["key_id"] == EPOCH and len(signal["value"]) == 64
        auth_a = {"Authorization": f"Bearer {ka}"}
        sub = httpx.post(
            a.url + "/v1/signals",
            headers=auth_a,
            json={
                "signals": [{**signal, "categories": ["grooming"], "audience": {"tlp": "green"}}]
            },
        )
        assert sub.json()["items"][0]["status"] == "created", sub.text

        # Platform B sees the same person, spelled differently, through its own node.
        r = _hash(b, kb, "  sam.synthetic@gmail.com ")
        assert r.returncode == 0, r.stderr
        at_b = json.loads(r.stdout)
        assert at_b["value"] == signal["value"]  # blinded differently, same OPRF value
        # B pulls A's records and matches: the signal A shared is found.
        auth_b = {"Authorization": f"Bearer {kb}"}

        def matched() -> bool:
            m = httpx.post(
                b.url + "/v1/match",
                headers=auth_b,
                json={"queries": [{k: at_b[k] for k in ("type", "value", "key_id")}]},
            )
            return bool(m.json()["results"][0]["matches"])

        wait_for(matched, 30)

        # The rogue holder h1 was asked first every time, refused and named; h2, h3 served.
        blinded = base64.b64encode(oprf.blind(b"email:other@example.org")[1]).decode()
        ev = httpx.post(
            a.url + "/v1/identifiers/oprf/evaluate", headers=auth_a, json={"blinded": [blinded]}
        ).json()
        assert [p["holder"] for p in ev["partials"]] == ["h2.test", "h3.test"]
        assert ev["refused_holders"][0]["holder"] == "h1.test"
        assert "bad partial evaluation" in ev["refused_holders"][0]["reason"]
        a_log = Path(a.env["SIGNET_DATA_DIR"]).parent / "a.test.log"
        assert "OPRF key holder h1.test refused" in a_log.read_text()

        # Over a holder's budget (40 per minute per member node): 429, naming the holders.
        auth_b2 = {"Authorization": "Bearer " + key(b, "match")["Authorization"][7:]}
        over = httpx.post(
            b.url + "/v1/identifiers/oprf/evaluate",
            headers=auth_b2,
            json={"blinded": [blinded] * 41},
        )
        assert over.status_code == 429, over.text
        assert over.headers["content-type"] == "application/problem+json"
        assert {x["holder"] for x in over.json()["holders"]} == set(HOLDERS)
        # Over the API key's budget at the member (20 per minute): 429 with Retry-After.
        mine = httpx.post(
            a.url + "/v1/identifiers/oprf/evaluate",
            headers=auth_a,
            json={"blinded": [blinded] * 21},
        )
        assert mine.status_code == 429 and int(mine.headers["retry-after"]) >= 1
        assert "API key" in mine.json()["detail"]

        # Each holder's log counts the evaluations per member node.
        tallies: dict[tuple[str, str], int] = {}
        for h in holders:
            with h.db() as db:
                for (data,) in db.execute("SELECT data FROM log_entry WHERE kind='oprf_tally'"):
                    e = json.loads(data)
                    tallies[(h.origin, e["member"])] = (
                        tallies.get((h.origin, e["member"]), 0) + e["count"]
                    )
        # h2 answered A twice (its hash and the rogue check) and B once; refused batches
        # (over a limit) were not evaluated and are not counted.
        assert tallies[("h2.test", "a.test")] == 2 and tallies[("h2.test", "b.test")] == 1
        assert ("h1.test", "a.test") in tallies  # the rogue holder evaluated too (and was caught)

        # Privacy: nothing computable from the email alone is in any node's files.
        msg = oprf_message("email", NORMAL)
        point = oprf.hash_to_group(msg, oprf.MODE_VOPRF)
        needles = [
            EMAIL.encode(),
            NORMAL.encode(),
            b"sam.synthetic",
            hashlib.sha256(NORMAL.encode()).hexdigest().encode(),
            hashlib.sha256(msg).hexdigest().encode(),
            point.hex().encode(),
            base64.b64encode(point),
        ]
        for p in procs:
            p.stop()
        traffic = b"".join(c.data() for c in captures)
        for c in captures:
            c.close()
        # The capture saw the OPRF exchanges (blinded elements), and none of the needles.
        assert b"/federation/v1/oprf/evaluate" in traffic and b'"blinded"' in traffic
        for n in needles:
            assert n not in traffic and n.lower() not in traffic.lower(), n
        files = [f for f in tmp_path.rglob("*") if f.is_file() and "ceremony" not in f.parts
                 and "rogue" not in f.parts]  # fmt: skip
        assert any(f.name == "signet.db" for f in files) and any(f.suffix == ".log" for f in files)
        for f in files:
            blob = f.read_bytes()
            for n in needles:
                assert n not in blob and n.lower() not in blob.lower(), (f, n)
