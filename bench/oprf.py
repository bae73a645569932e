"""Threshold OPRF speed: holder evaluations/s per core and client batch latency, beside raw
ristretto255 scalar multiplications (libsodium via pysodium) measured in the same run.

    .venv/bin/python bench/oprf.py [--batch 1000] [--repeat 3]

Rows (2-of-3 sharing, one pinned core):

- baseline: `crypto_scalarmult_ristretto255` calls per second. "scalar mults' worth" in the
  other rows is their time per item in units of this call.
- holder, crypto only: `evaluate_share` (an RFC 9497 BlindEvaluate with the share: one
  multiplication per element plus the batched DLEQ proof's composite).
- holder, service: `OprfService.holder_evaluate` on a real node (SQLite), parsing included and
  the `oprf_tally` log append committed: the holder's evaluations/s per core.
- member node: verifying two holders' batch proofs.
- client: blinding, then verifying two proofs, combining, unblinding and hashing.
- client batch latency: `hash_identifiers_oprf` over `NodeClient` through a member node and
  three holders running as FastAPI apps in this process (RFC 9421-signed requests, log
  tallies, every check). All parties share this one core, so it is an upper bound for a
  deployment where each runs on its own machine, less network round trips.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

CPU = common.pin_one_core()

import httpx  # noqa: E402
import pysodium  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from app.client import NodeClient  # noqa: E402
from app.crypto import oprf  # noqa: E402
from app.crypto import oprf_threshold as th  # noqa: E402
from app.main import create_app  # noqa: E402
from app.services import apikeys  # noqa: E402
from app.services.node import open_node  # noqa: E402
from app.services.oprf import OprfService, load_epoch_file, write_ceremony  # noqa: E402
from app.settings import load_settings  # noqa: E402
from app.signals.identifiers import hash_identifiers_oprf  # noqa: E402

HOLDERS = ["h1.bench", "h2.bench", "h3.bench"]
EPOCH = "bench"


def federation(stack: ExitStack, tmp: Path) -> tuple[TestClient, str, dict[str, OprfService]]:
    """A member node and three holders in this process, peers of each other."""
    registry: dict[str, httpx.Client] = {}
    clients: dict[str, TestClient] = {}
    admins: dict[str, str] = {}
    vkeys: dict[str, str] = {}
    for origin in ["member.bench", *HOLDERS]:
        extra = (
            {"oprf_epoch_files": str(tmp / "c" / f"{EPOCH}.epoch.json")}
            if origin == "member.bench"
            else {"oprf_share_files": str(tmp / "c" / f"{EPOCH}.{origin}.share.json")}
        )
        settings = load_settings(
            origin=origin,
            data_dir=tmp / origin,
            public_url=f"http://{origin}",
            background=False,
            log_level="warning",
            oprf_holder_limit=10**9,
            oprf_key_limit=10**9,
            **extra,
        )
        node = open_node(settings)
        stack.callback(node.db.dispose)
        client = stack.enter_context(
            TestClient(create_app(settings, node=node, peer_clients=registry))
        )
        registry[f"http://{origin}"] = clients[origin] = client
        admins[origin] = apikeys.create(node, "admin", ["admin"]).key
        vkeys[origin] = node.verifier_key
    for h in HOLDERS:
        for a, b in (("member.bench", h), (h, "member.bench")):
            r = clients[a].post(
                "/v1/admin/peers",
                headers={"Authorization": f"Bearer {admins[a]}"},
                json={"url": f"http://{b}", "verifier_key": vkeys[b]},
            )
            r.raise_for_status()
    member = clients["member.bench"]
    key = apikeys.create(member.app.state.node, "platform", ["match"]).key  # type: ignore[attr-defined]
    services = {h: clients[h].app.state.oprf for h in HOLDERS}  # type: ignore[attr-defined]
    return member, key, services


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    n, rep = args.batch, args.repeat
    print(common.machine_info({"libsodium": pysodium.sodium.sodium_version_string().decode()}))

    k = oprf.scalar_bytes(oprf.random_scalar())
    p = oprf.scalar_mult_base(oprf.random_scalar())
    mults = 2000
    t = common.best_time(
        lambda: [pysodium.crypto_scalarmult_ristretto255(k, p) for _ in range(mults)], rep
    )
    raw = mults / t

    def row(what: str, seconds: float, items: int, **extra: str) -> dict[str, str]:
        return {
            "what": what,
            "per second, one core": common.fmt_rate(items / seconds),
            "per item": f"{1e6 * seconds / items:.0f} µs",
            "scalar mults' worth": f"{raw * seconds / items:.2f}",
            **extra,
        }

    rows = [row("raw ristretto255 scalar mult (baseline)", 1 / raw, 1)]
    inputs = [f"email:user{i}@example.org".encode() for i in range(n)]
    emails = [f"user{i}@example.org" for i in range(n)]

    with tempfile.TemporaryDirectory() as d, ExitStack() as stack:
        tmp = Path(d)
        write_ceremony(EPOCH, HOLDERS, 2, tmp / "c")
        epoch = load_epoch_file(tmp / "c" / f"{EPOCH}.epoch.json")
        member, key, services = federation(stack, tmp)
        shares = {h: services[h].shares[EPOCH].share for h in HOLDERS}

        pairs = [oprf.blind(x) for x in inputs]
        blinds, blinded = [q[0] for q in pairs], [q[1] for q in pairs]
        t_crypto = common.best_time(lambda: th.evaluate_share(shares["h1.bench"], blinded), rep)
        rows.append(row(f"holder: crypto only, batch {n}", t_crypto, n))
        body = json.dumps(
            {"epoch": EPOCH, "blinded": [base64.b64encode(b).decode() for b in blinded]}
        ).encode()
        h1 = services["h1.bench"]
        t_holder = common.best_time(lambda: h1.holder_evaluate("member.bench", body), rep)
        rows.append(row(f"holder: service + log tally, batch {n}", t_holder, n))

        partials = []
        for h in HOLDERS[1:]:
            ev, proof = th.evaluate_share(shares[h], blinded)
            partials.append(th.Partial(h, tuple(ev), proof))
        t_member = common.best_time(
            lambda: [th.verify_partial(epoch, blinded, q) for q in partials], rep
        )
        rows.append(row(f"member node: verify 2 holders' proofs, batch {n}", t_member, n))
        t_blind = common.best_time(lambda: [oprf.blind(x) for x in inputs], rep)
        t_final = common.best_time(
            lambda: th.finalize(epoch, inputs, blinds, blinded, partials), rep
        )
        rows.append(
            row(f"client: blind + verify 2, combine, unblind, batch {n}", t_blind + t_final, n)
        )

        transport = member._transport
        with NodeClient("http://member.bench", key, transport=transport) as client:
            for size in (1, 100, n):
                t_b = common.best_time(
                    lambda size=size: hash_identifiers_oprf(  # type: ignore[misc]
                        "email", emails[:size], epoch, client.oprf_evaluate
                    ),
                    rep,
                )
                rows.append(
                    row(
                        f"client batch of {size}: member + 3 holders, in-process HTTP",
                        t_b,
                        size,
                        **{"batch latency": f"{t_b * 1000:.1f} ms"},
                    )
                )
    common.print_table(rows)


if __name__ == "__main__":
    main()
