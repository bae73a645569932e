"""Our PDQ (pdqhash over Pillow) agrees with the hashes Meta publishes for its sample images.

Data: tests/vectors/pdq/ (see tests/vectors/README.md for the source and licence).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.hashing import hamming, hash_file

VECTORS = Path(__file__).parent.parent / "vectors" / "pdq"
REFERENCE: dict[str, Any] = json.loads((VECTORS / "reference.json").read_text())
# Meta's own cross-implementation test (pdq_test.py) accepts this distance.
TOLERANCE = 16
# On images PDQ rates usable, the implementations agree almost bit for bit.
TOLERANCE_GOOD = 4


@pytest.mark.parametrize("image", REFERENCE["images"], ids=lambda im: im["file"])
def test_pdq_matches_published_reference(image: dict[str, Any]) -> None:
    h = hash_file(VECTORS / image["file"])
    assert h.error is None and h.pdq is not None and h.quality is not None
    limit = TOLERANCE_GOOD if h.quality >= 50 else TOLERANCE
    for ref in image["references"]:
        assert hamming(h.pdq, ref["pdq"]) <= limit, ref["from"]
    if image["quality"] is not None:
        assert h.quality == image["quality"]


def test_reference_set_is_small_and_complete() -> None:
    files = {p.name for p in VECTORS.glob("*.jpg")}
    assert files == {im["file"] for im in REFERENCE["images"]}
    assert sum((VECTORS / f).stat().st_size for f in files) < 1_000_000
