"""How a vpdq signal appears in the feeds: TAXII yes (custom observable), StopNCII no."""

from __future__ import annotations

import base64
from typing import Any

import stix2

from tests.feeds.helpers import signal, submit
from tests.feeds.test_feeds_api import _collections, _fn_key, _stopncii_all, _taxii_all
from tests.signals.test_sig_video import published


def test_vpdq_in_taxii_not_in_stopncii(client: Any, auth: dict[str, str], make_key: Any) -> None:
    text = published("doorknob-hd-no-bar")
    vid = {"type": "vpdq", "value": text, "categories": ["ncii"], "audience": {"tlp": "clear"}}
    submit(client, auth, vid, signal("md5", "video-file", "clear"))
    # StopNCII knows ImagePDQ, VideoMD5, URL and Text only: a vpdq would be unreadable there.
    feed = _fn_key(make_key("feed"))
    assert [r["signalType"] for r in _stopncii_all(client, feed)] == ["VideoMD5"]

    key = make_key("feed", member=True)["Authorization"].removeprefix("Bearer ")
    basic = {"Authorization": "Basic " + base64.b64encode(f"me:{key}".encode()).decode()}
    objs = _taxii_all(client, basic, _collections(client, basic)["all"])
    (ind,) = [o for o in objs if o["x_signet_type"] == "vpdq"]
    assert ind["pattern"].startswith("[x-signet-vpdq:value = '0,")
    assert ind["x_signet_record"]["value"] == text.strip()
    assert stix2.parse(ind, allow_custom=True, version="2.1").type == "indicator"
