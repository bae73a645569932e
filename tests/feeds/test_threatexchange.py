"""The real, unmodified python-threatexchange (pinned 1.2.17) against a live node.

StopNCII route: the library's own StopNCII exchange, pointed at the node through the base-URL
field of its credentials. Extension: `signet_tx` loaded through the library's manifest hook.
In both, "fetch" is the library's fetch_iter + naive merge and "match" its own index.
"""

from __future__ import annotations

import time
import typing as t
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from threatexchange.exchanges import fetch_state as state
from threatexchange.exchanges.collab_config import CollaborationConfigBase
from threatexchange.exchanges.impl.stop_ncii_api import (
    StopNCIICredentials,
    StopNCIISignalExchangeAPI,
)
from threatexchange.extensions.manifest import ThreatExchangeExtensionManifest
from threatexchange.signal_type.md5 import VideoMD5Signal
from threatexchange.signal_type.pdq.signal import PdqSignal
from threatexchange.signal_type.raw_text import RawTextSignal
from threatexchange.signal_type.url import URLSignal

from app.crypto.keys import VerifierKey
from tests.feeds.helpers import hexof, signal

TYPES = [PdqSignal, VideoMD5Signal, URLSignal, RawTextSignal]


def _fetch(api: t.Any, checkpoint: t.Any = None, store: dict | None = None) -> tuple[dict, t.Any]:
    store = {} if store is None else store
    for delta in api.fetch_iter(TYPES, checkpoint):
        api.naive_fetch_merge(store, delta.updates)
        checkpoint = delta.checkpoint
    return store, checkpoint


def _match(api_cls: t.Any, collab: t.Any, store: dict, s_type: t.Any, value: str) -> list:
    by_type = api_cls.naive_convert_to_signal_type([*TYPES, *_EXT.signal_types], collab, store)
    entries = by_type.get(s_type, {})
    index = s_type.get_index_cls().build(entries.items())
    return index.query(value)


_EXT = ThreatExchangeExtensionManifest.load_from_module_name("signet_tx")


def _submit(live: t.Any, key: str, *signals: dict) -> list[str]:
    r = httpx.post(
        live.url + "/v1/signals",
        json={"signals": list(signals)},
        headers={"Authorization": f"Bearer {key}"},
    )
    r.raise_for_status()
    return [i["id"] for i in r.json()["items"]]


def test_stopncii_client_fetch_then_match(live):
    platform = live.key("submit", "read", "feedback")
    feed = live.key("feed")
    pdq_hex = hexof("stopncii-photo")
    (pdq,) = _submit(live, platform, signal("pdq", "stopncii-photo", "clear", opinion="positive"))
    _submit(live, platform, signal("pdq", "stopncii-red", "red"))
    _submit(live, platform, signal("pdq", "stopncii-amber", "amber"))
    _submit(live, platform, signal("pdq", "stopncii-green", "green"))
    _submit(live, platform, *(signal("md5", f"bulk{i}", "clear") for i in range(5)))

    creds = StopNCIICredentials._from_str(f"{feed},{feed},{live.url}/stopncii/v1")
    collab = CollaborationConfigBase(name="signet", api="stop_ncii", enabled=True)
    api = StopNCIISignalExchangeAPI.for_collab(collab, creds)
    api.api.fetch_hashes = _small_pages(api.api.fetch_hashes)  # several pages, same client code
    store, checkpoint = _fetch(api)

    assert ("pdq", pdq_hex) in store
    assert ("pdq", hexof("stopncii-red")) not in store
    assert ("pdq", hexof("stopncii-amber")) not in store
    assert ("pdq", hexof("stopncii-green")) not in store  # not a member key
    assert len(store) == 6
    hits = _match(StopNCIISignalExchangeAPI, collab, store, PdqSignal, pdq_hex)
    assert len(hits) == 1
    agg = hits[0].metadata.get_as_aggregate_opinion()
    assert agg.category == state.AggregateSignalOpinionCategory.POSITIVE_CLASS
    assert "ncii" in agg.tags

    # Resuming from the stored checkpoint sees new signals and only repeats the last second.
    _submit(live, platform, signal("md5", "late", "clear"))
    store, _ = _fetch(api, checkpoint, store)
    assert ("video_md5", hexof("late", 32)) in store
    assert pdq


def _stopncii_api(live: t.Any, feed: str) -> t.Any:
    creds = StopNCIICredentials._from_str(f"{feed},{feed},{live.url}/stopncii/v1")
    collab = CollaborationConfigBase(name="signet", api="stop_ncii", enabled=True)
    api = StopNCIISignalExchangeAPI.for_collab(collab, creds)
    api.api.fetch_hashes = _small_pages(api.api.fetch_hashes)
    return api


def _retract(live: t.Any, key: str, uid: str) -> None:
    httpx.post(
        f"{live.url}/v1/signals/{uid}/retract",
        json={"reason": "withdrawn"},
        headers={"Authorization": f"Bearer {key}"},
    ).raise_for_status()


def test_stopncii_client_never_stores_a_withdrawal_it_never_held(live):
    """Issue 18: a walk that ends in the same second as a retraction used to send that signal
    as `Withdrawn` on the next resume, which the unmodified client stores as an active hash."""
    platform = live.key("submit", "read", "feedback")
    api = _stopncii_api(live, live.key("feed"))
    (kept,) = _submit(live, platform, signal("pdq", "ncii-kept", "clear"))
    (gone,) = _submit(live, platform, signal("pdq", "ncii-gone-before", "clear"))
    _retract(live, platform, gone)  # retracted before the consumer ever fetched
    store, checkpoint = _fetch(api)
    assert set(store) == {("pdq", hexof("ncii-kept"))}

    (held,) = _submit(live, platform, signal("pdq", "ncii-held", "clear"))
    store, checkpoint = _fetch(api, checkpoint, store)  # now holds `held`
    (never,) = _submit(live, platform, signal("pdq", "ncii-never", "clear"))
    _retract(live, platform, never)  # created and withdrawn between two fetches
    _retract(live, platform, held)
    store, checkpoint = _fetch(api, checkpoint, store)
    store, checkpoint = _fetch(api, checkpoint, store)  # and resuming again changes nothing
    # The client's bug keeps `held` as active (documented; the node did send its withdrawal),
    # but nothing it never held appears in its store.
    assert set(store) == {("pdq", hexof("ncii-kept")), ("pdq", hexof("ncii-held"))}
    assert kept


def _small_pages(fetch: t.Callable[..., t.Any]) -> t.Callable[..., t.Any]:
    def paged(**kwargs: t.Any) -> t.Any:
        kwargs["page_size"] = 2
        return fetch(**kwargs)

    return paged


def _signet_api(live: t.Any, key: str, **config: t.Any) -> t.Any:
    from signet_tx import SignetCollabConfig, SignetSignalExchangeAPI

    collab = SignetCollabConfig(
        name="signet-ncii",
        node_url=live.url,
        verifier_keys=live.node.verifier_key,
        **config,
    )
    return SignetSignalExchangeAPI(collab, key), collab


def test_extension_fetch_match_retract_expire(live):
    from signet_tx import SignetEmailSignal, SignetSignalExchangeAPI

    platform = live.key("submit", "read", "feedback")
    feed = live.key("feed", "match", "feedback")
    pdq_hex, email_hex = hexof("ext-photo"), hexof("ext-email")
    pdq, email, _grooming = _submit(
        live,
        platform,
        signal("pdq", "ext-photo", "clear", opinion="positive"),
        signal("email", "ext-email", "clear"),
        signal("md5", "ext-groom", "clear", categories=["grooming"]),
    )
    _submit(live, platform, signal("pdq", "ext-red", "red"), signal("pdq", "ext-amb", "amber"))
    soon = datetime.now(UTC) + timedelta(seconds=6)
    (short,) = _submit(
        live, platform, signal("md5", "ext-short", "clear", valid_until=soon.isoformat())
    )

    api, collab = _signet_api(live, feed, category="ncii")
    store, checkpoint = _fetch(api)
    fetched_before_expiry = datetime.now(UTC) < soon
    origin = live.node.origin
    want = {f"{origin}/{i}" for i in (pdq, email)}
    short_key = f"{origin}/{short}"
    if fetched_before_expiry:
        assert set(store) == want | {short_key}
    else:  # a machine too loaded to fetch within 6 s: the short-lived one may be gone already
        assert want <= set(store) <= want | {short_key}
    assert len(_match(SignetSignalExchangeAPI, collab, store, PdqSignal, pdq_hex)) == 1
    assert len(_match(SignetSignalExchangeAPI, collab, store, SignetEmailSignal, email_hex)) == 1

    # Feedback flows back to the origin.
    api.report_opinion(
        PdqSignal,
        pdq_hex,
        state.SignalOpinion(True, state.SignalOpinionCategory.NEGATIVE_CLASS, set()),
    )
    got = httpx.get(
        f"{live.url}/v1/signals/{pdq}", headers={"Authorization": f"Bearer {platform}"}
    ).json()
    assert got["feedback"].get("false_positive") == 1

    # A retraction is a real delete.
    httpx.post(
        f"{live.url}/v1/signals/{pdq}/retract",
        json={"reason": "withdrawn"},
        headers={"Authorization": f"Bearer {platform}"},
    ).raise_for_status()
    store, checkpoint = _fetch(api, checkpoint, store)
    assert f"{origin}/{pdq}" not in store
    assert _match(SignetSignalExchangeAPI, collab, store, PdqSignal, pdq_hex) == []

    # Expiry: the short-lived signal is never indexed past its validity, and the next fetch
    # deletes it from the fetched state.
    for _ in range(100):  # bounded wait for the clock to pass valid_until
        if datetime.now(UTC) > soon + timedelta(seconds=1):
            break
        time.sleep(0.1)
    by_type = SignetSignalExchangeAPI.naive_convert_to_signal_type(TYPES, collab, store)
    assert hexof("ext-short", 32) not in by_type.get(VideoMD5Signal, {})
    store, checkpoint = _fetch(api, checkpoint, store)
    assert f"{origin}/{short}" not in store
    assert set(store) == {f"{origin}/{email}"}


def test_extension_refuses_tampered_and_skips_unpinned(live, tmp_path):
    import pytest

    from app.crypto.keys import NodeKey
    from signet_tx.api import SignetFetchError

    platform = live.key("submit")
    feed = live.key("feed")
    _submit(live, platform, signal("pdq", "tamper", "clear"))

    other = NodeKey.from_seed(b"\x07" * 32).verifier_key("other.example")
    api, _ = _signet_api(live, feed)
    parsed = _parse(other)
    api.keys = {(parsed.origin, parsed.key_id): parsed}
    store, _ = _fetch(api)  # our node's origin is not pinned: skipped, not trusted
    assert store == {}

    api, _ = _signet_api(live, feed)
    real_get = api._get

    def tampering_get(path: str, params: dict) -> dict:
        body = real_get(path, params)
        for item in body.get("records", []):
            item["record"]["value"] = "0" * 64
        return body

    api._get = tampering_get
    with pytest.raises(SignetFetchError):
        _fetch(api)


def _parse(text: str) -> t.Any:
    from app.crypto.keys import VerifierKey

    return VerifierKey.parse(text)


def test_extension_config_loads_from_strings_as_hma_posts_it(live):
    """HMA's curator UI and API post every config field as a string (issue 18: a list-typed
    `verifier_keys` made HMA refuse the exchange)."""
    from threatexchange.utils import dataclass_json

    from signet_tx import SignetCollabConfig, SignetSignalExchangeAPI

    vkey = live.node.verifier_key
    cfg = dataclass_json.dataclass_load_dict(
        {
            "name": "SIGNET_NCII",
            "api": "signet",
            "enabled": True,
            "node_url": live.url,
            "verifier_keys": f" {vkey}, {vkey} ",
            "category": "ncii",
        },
        SignetCollabConfig,
    )
    api = SignetSignalExchangeAPI(cfg, live.key("feed"))
    assert list(api.keys.values()) == [VerifierKey.parse(vkey)]


def test_extension_credentials_name_a_key_per_node():
    from threatexchange.exchanges.auth import SignalExchangeAPIInvalidAuthException

    from signet_tx.api import SignetCredentials

    one = SignetCredentials._from_str("k-all")
    assert one.key_for("https://a.example") == "k-all"
    many = SignetCredentials._from_str("https://a.example/=k-a, https://B.example=k-b")
    assert many.key_for("https://a.example") == "k-a"
    assert many.key_for("https://b.example/") == "k-b"
    with pytest.raises(SignalExchangeAPIInvalidAuthException):
        many.key_for("https://c.example")
    fallback = SignetCredentials._from_str("https://a.example=k-a,k-default")
    assert fallback.key_for("https://c.example") == "k-default"
