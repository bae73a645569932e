"""OPRF configuration and limits: share and epoch files, the evaluation budget."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from app.crypto import oprf
from app.errors import ConfigError
from app.services.oprf import (
    load_epoch_file,
    load_share_file,
    share_file_json,
    write_ceremony,
)
from app.services.oprf_limits import EvaluationLimiter, RateLimited

HOLDERS = ["h1.test", "h2.test", "h3.test"]


def test_ceremony_files_load_and_are_private(tmp_path: Path) -> None:
    files = write_ceremony("e1", HOLDERS, 2, tmp_path)
    epoch = load_epoch_file(files[0])
    assert [h.origin for h in epoch.holders] == HOLDERS and epoch.threshold == 2
    for h in HOLDERS:
        path = tmp_path / f"e1.{h}.share.json"
        assert path.stat().st_mode & 0o777 == 0o600
        held = load_share_file(path, h)
        assert oprf.public_key(held.share) == epoch.holder(h).public_share
        # The share never appears in the public epoch file.
        assert json.loads(path.read_text())["share"] not in files[0].read_text()
    with pytest.raises(ConfigError, match="exists"):
        write_ceremony("e1", HOLDERS, 2, tmp_path)


def test_share_files_that_must_be_refused(tmp_path: Path) -> None:
    write_ceremony("e1", HOLDERS, 2, tmp_path)
    path = tmp_path / "e1.h1.test.share.json"
    with pytest.raises(ConfigError, match=r"not h2\.test"):
        load_share_file(path, "h2.test")
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        load_share_file(path, "h1.test")
    os.chmod(path, 0o600)
    data = json.loads(path.read_text())
    held = load_share_file(path, "h1.test")
    wrong = tmp_path / "wrong.json"
    wrong.write_text(
        json.dumps(share_file_json(held.epoch, "h1.test", (held.share + 1) % oprf.ORDER))
    )
    os.chmod(wrong, 0o600)
    with pytest.raises(ConfigError, match="does not match its public share"):
        load_share_file(wrong, "h1.test")
    data["epoch"]["threshold"] = 9
    wrong.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="threshold"):
        load_share_file(wrong, "h1.test")


def test_limiter_spends_refills_and_refuses_without_spending() -> None:
    now = [0.0]
    lim = EvaluationLimiter(60, clock=lambda: now[0])  # one per second, burst 60
    lim.take("m", 50)
    with pytest.raises(RateLimited) as info:
        lim.take("m", 11, who="member node m")
    assert info.value.retry_after == 1 and "member node m" in str(info.value)
    lim.take("m", 10)  # the refused batch spent nothing
    lim.take("other", 60)  # buckets are per key
    now[0] += 5
    lim.take("m", 5)
    with pytest.raises(RateLimited):
        lim.take("m", 1)
    with pytest.raises(RateLimited) as info:
        lim.take("big", 61)  # larger than the burst: never fits
    assert info.value.retry_after == 60
