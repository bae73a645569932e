"""Threshold OPRF speed: holder evaluations/s per core and client batch latency, beside raw
ristretto255 scalar multiplications (libsodium via pysodium) measured in the same run.

    .venv/bin/python bench/oprf.py [--batch 1000] [--repeat 3]

- baseline: `crypto_scalarmult_ristretto255` calls per second on one core; every OPRF step is
  counted in these (a holder does about 2 per element: the evaluation and the proof's
  composite; a verifier about 2 per element per holder; a client 2 per element to blind and
  unblind plus `threshold` to combine).
- holder: `OprfService.holder_evaluate` on a real node (SQLite, the `oprf_tally` log append
  included): elements evaluated per second on one core, and the crypto alone.
- client batch: one batch end to end in one process, 2-of-3, no network: blind, two holders
  evaluate, the member node verifies both proofs, the client verifies again, combines,
  unblinds and hashes. Network hops are not included (the e2e test runs them).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

CPU = common.pin_one_core()

import pysodium  # noqa: E402

from app.crypto import oprf  # noqa: E402
from app.crypto import oprf_threshold as th  # noqa: E402
from app.services.node import open_node  # noqa: E402
from app.services.oprf import OprfService, load_epoch_file, write_ceremony  # noqa: E402
from app.settings import load_settings  # noqa: E402

HOLDERS = ["h1.bench", "h2.bench", "h3.bench"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    n, rep = args.batch, args.repeat
    print(common.machine_info({"libsodium": pysodium.sodium.sodium_version_string().decode()}))

    # Baseline: raw scalar multiplications.
    k = oprf.scalar_bytes(oprf.random_scalar())
    p = oprf.scalar_mult_base(oprf.random_scalar())
    mults = 2000
    t = common.best_time(
        lambda: [pysodium.crypto_scalarmult_ristretto255(k, p) for _ in range(mults)], rep
    )
    raw = mults / t

    inputs = [f"email:user{i}@example.org".encode() for i in range(n)]
    pairs = [oprf.blind(x) for x in inputs]
    blinded = [q[1] for q in pairs]

    with tempfile.TemporaryDirectory() as tmp:
        files = write_ceremony("bench", HOLDERS, 2, Path(tmp) / "c")
        epoch = load_epoch_file(files[0])
        settings = load_settings(
            origin="h1.bench",
            data_dir=Path(tmp) / "h1",
            background=False,
            oprf_share_files=str(Path(tmp) / "c" / "bench.h1.bench.share.json"),
            oprf_holder_limit=10**9,
        )
        node = open_node(settings)
        service = OprfService(node)
        share = service.shares["bench"].share
        body = json.dumps(
            {"epoch": "bench", "blinded": [base64.b64encode(b).decode() for b in blinded]}
        ).encode()
        t_holder = common.best_time(lambda: service.holder_evaluate("member.bench", body), rep)
        t_crypto = common.best_time(lambda: th.evaluate_share(share, blinded), rep)
        shares = {}
        for h in HOLDERS[1:]:
            data = json.loads((Path(tmp) / "c" / f"bench.{h}.share.json").read_text())
            shares[h] = oprf.deserialize_scalar(base64.b64decode(data["share"]))
        service.close()
        node.db.dispose()

    def batch(size: int) -> None:
        ins = inputs[:size]
        ps = [oprf.blind(x) for x in ins]
        bl = [q[1] for q in ps]
        partials = []
        for h in HOLDERS[1:]:
            ev, proof = th.evaluate_share(shares[h], bl)
            partial = th.Partial(h, tuple(ev), proof)
            th.verify_partial(epoch, bl, partial)  # the member node's check
            partials.append(partial)
        th.finalize(epoch, ins, [q[0] for q in ps], bl, partials)  # the client's

    def row(what: str, seconds: float, items: int, **extra: str) -> dict[str, str]:
        return {
            "what": what,
            "per second, one core": common.fmt_rate(items / seconds),
            "per item": f"{1e6 * seconds / items:.0f} µs",
            "scalar mults' worth": f"{raw * seconds / items:.2f}",
            **extra,
        }

    rows = [
        row("raw ristretto255 scalar mult (baseline)", 1 / raw, 1),
        row(f"holder: crypto only, batch {n}", t_crypto, n),
        row(f"holder: holder_evaluate + log tally, batch {n}", t_holder, n),
    ]
    for size in (1, 100, n):
        t_b = common.best_time(lambda size=size: batch(size), rep)
        rows.append(
            row(
                f"client batch of {size}, 2-of-3, all parties, no network",
                t_b,
                size,
                **{"batch latency": f"{t_b * 1000:.1f} ms"},
            )
        )
    common.print_table(rows)


if __name__ == "__main__":
    main()
