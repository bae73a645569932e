"""The consumer feeds over the API, on SQLite and PostgreSQL: audiences, paging, mapping."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import stix2

from tests.feeds.helpers import hexof, one_of_each, signal, submit

TAXII = "application/taxii+json;version=2.1"


def _stopncii_all(client: Any, headers: dict[str, str], start: int = 10, size: int = 3) -> list:
    records, token = [], None
    for _ in range(100):
        params: dict[str, Any] = {"startTimestamp": start, "pageSize": size}
        if token:
            params["nextPageToken"] = token
        r = client.get("/stopncii/v1/FetchHashes", params=params, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["count"] == len(body["hashRecords"])
        records += body["hashRecords"]
        if not body["hasMoreRecords"]:
            assert body["nextPageToken"] is None
            return records
        token = body["nextPageToken"]
    raise AssertionError("paging did not end")


def _fn_key(auth: dict[str, str]) -> dict[str, str]:
    key = auth["Authorization"].removeprefix("Bearer ")
    return {"x-functions-key": key, "Ocp-Apim-Subscription-Key": key}


def _changes_all(client: Any, headers: dict[str, str]) -> list[dict[str, Any]]:
    out, after = [], -1
    for _ in range(100):
        r = client.get("/v1/changes", params={"after": after, "limit": 4}, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        out += body["records"]
        after = body["next"]
        if not body["more"]:
            return out
    raise AssertionError("paging did not end")


def _taxii_all(client: Any, headers: dict[str, str], cid: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 4}
    for _ in range(100):
        r = client.get(f"/taxii2/signet/collections/{cid}/objects/", params=params, headers=headers)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == TAXII
        body = r.json()
        out += body["objects"]
        if not body["more"]:
            return out
        params = {"limit": 4, "next": body["next"]}
    raise AssertionError("paging did not end")


def _collections(client: Any, headers: dict[str, str]) -> dict[str, str]:
    r = client.get("/taxii2/signet/collections/", headers=headers)
    assert r.status_code == 200, r.text
    return {c["alias"]: c["id"] for c in r.json()["collections"]}


@pytest.mark.parametrize("member", [False, True])
def test_no_red_amber_and_green_only_for_members(client, auth, make_key, member):
    ids = one_of_each(client, auth)
    feed = make_key("feed", member=member)
    allowed = set(ids["clear"]) | (set(ids["green"]) if member else set())
    forbidden = {i for tlp in ("red", "amber", "green") for i in ids[tlp]} - allowed

    stop = _stopncii_all(client, _fn_key(feed))
    stop_ids = {cn.split("/")[1] for r in stop for cn in r["caseNumbers"]}
    assert stop_ids and stop_ids <= allowed and not stop_ids & forbidden
    # Only the four StopNCII types: pdq, md5, domain, keyword per allowed level.
    assert len(stop) == 4 * (2 if member else 1)

    changes = _changes_all(client, feed)
    got = {c["record"]["id"] for c in changes}
    assert got == allowed
    assert {c["record"]["audience"]["tlp"] for c in changes} <= {"clear", "green"}

    cids = _collections(client, feed)
    objs = _taxii_all(client, feed, cids["all"])
    assert {o["id"].split("--")[0] for o in objs} == {"indicator"}
    assert {o["x_signet_record"]["id"] for o in objs} == allowed
    assert len(_taxii_all(client, feed, cids["ncii"])) == len(allowed)
    assert _taxii_all(client, feed, cids["grooming"]) == []


def test_feeds_need_feed_scope(client, auth, make_key):
    one_of_each(client, auth)
    other = make_key("read", "match")
    assert client.get("/v1/changes", headers=other).status_code == 403
    assert client.get("/v1/changes").status_code == 401
    r = client.get("/stopncii/v1/FetchHashes", headers=_fn_key(other))
    assert r.status_code == 403
    assert client.get("/stopncii/v1/FetchHashes").status_code == 401
    bad = {"x-functions-key": "sgn_nope", "Ocp-Apim-Subscription-Key": "sgn_nope"}
    assert client.get("/stopncii/v1/FetchHashes", headers=bad).status_code == 401
    feed = make_key("feed")
    mixed = {**_fn_key(feed), "Ocp-Apim-Subscription-Key": "something-else"}
    assert client.get("/stopncii/v1/FetchHashes", headers=mixed).status_code == 401
    assert client.get("/taxii2/", headers=other).status_code == 403
    assert client.get("/taxii2/").status_code == 401
    garbage = {"Authorization": "Basic !!!"}
    assert client.get("/taxii2/", headers=garbage).status_code == 401


def test_stopncii_mapping_and_withdrawals(client, auth, make_key):
    feed = _fn_key(make_key("feed"))
    (pdq,) = submit(client, auth, signal("pdq", "a", "clear", opinion="positive"))
    client.post(
        "/v1/feedback", json={"signal": pdq, "verdict": "false_positive"}, headers=auth
    ).raise_for_status()
    (rec,) = _stopncii_all(client, feed)
    assert rec["signalType"] == "ImagePDQ" and rec["hashStatus"] == "Active"
    assert rec["caseNumbers"] == {f"test.example/{pdq}": "Active"}
    values = [(f["feedbackValue"], f["source"]) for f in rec["CSPFeedbacks"]]
    assert ("Blocked", "test.example") in values and ("NotBlocked", "signet") in values
    assert isinstance(rec["lastModtimestamp"], int)

    # A retraction shows as Withdrawn to a consumer resuming from before it, and is not sent to
    # a fresh consumer for a signal created after its start (it could never have held it).
    r = client.get("/stopncii/v1/FetchHashes", params={"startTimestamp": 10}, headers=feed)
    checkpoint = r.json()["nextSetTimestamp"]
    (later,) = submit(client, auth, signal("md5", "b", "clear"))
    client.post(f"/v1/signals/{pdq}/retract", json={"reason": "test"}, headers=auth)
    client.post(f"/v1/signals/{later}/retract", json={"reason": "test"}, headers=auth)
    resumed = _stopncii_all(client, feed, start=checkpoint)
    statuses = {r["hashValue"]: r["hashStatus"] for r in resumed}
    assert statuses[rec["hashValue"]] == "Withdrawn"
    assert set(statuses.values()) == {"Withdrawn"}
    # A consumer starting from scratch gets no withdrawn records at all.
    assert _stopncii_all(client, feed, start=10) == []


def test_stopncii_withdrawals_reach_holders_only(client, auth, make_key):
    """Issue 18, as a model check: random submits, retractions, whole walks and walks cut short
    after one page (a consumer that persisted a page's checkpoint, then stopped). A `Withdrawn`
    record must only ever reach a consumer that holds the hash (python-threatexchange 1.2.17
    stores any other as active), and a client that applies withdrawals ends up with exactly the
    node's active hashes."""
    import random

    rng = random.Random(18)
    feed = _fn_key(make_key("feed"))
    active: dict[str, str] = {}  # uid -> hash
    held: set[str] = set()  # what a client that deletes on `Withdrawn` holds
    checkpoint = 10

    def page(token: str | None, size: int) -> dict[str, Any]:
        params: dict[str, Any] = {"startTimestamp": checkpoint, "pageSize": size}
        if token:
            params["nextPageToken"] = token
        r = client.get("/stopncii/v1/FetchHashes", params=params, headers=feed)
        assert r.status_code == 200, r.text
        body = r.json()
        for rec in body["hashRecords"]:
            if rec["hashStatus"] == "Withdrawn":
                assert rec["hashValue"] in held, "withdrawal sent for a hash never delivered"
                held.discard(rec["hashValue"])
            else:
                held.add(rec["hashValue"])
        return body

    for step in range(70):
        op = rng.choice(["submit", "submit", "retract", "retract", "walk", "one_page"])
        if op == "submit":
            (uid,) = submit(client, auth, signal("md5", f"model-{step}", "clear"))
            active[uid] = hexof(f"model-{step}", 32)
        elif op == "retract" and active:
            uid = rng.choice(sorted(active))
            r = client.post(f"/v1/signals/{uid}/retract", json={"reason": "t"}, headers=auth)
            assert r.status_code == 200, r.text
            del active[uid]
        elif op in ("walk", "one_page"):
            token, size = None, rng.randint(1, 4)
            while True:
                body = page(token, size)
                checkpoint = body["nextSetTimestamp"]  # persisted after every page, as HMA does
                token = body["nextPageToken"]
                if op == "one_page" or not body["hasMoreRecords"]:
                    break
    token = None
    while True:
        body = page(token, 3)
        token = body["nextPageToken"]
        if not body["hasMoreRecords"]:
            break
    assert held == set(active.values())


def test_stopncii_token_is_stable_under_inserts(client, auth, make_key):
    feed = _fn_key(make_key("feed"))
    submit(client, auth, *(signal("md5", f"s{i}", "clear") for i in range(5)))
    r = client.get(
        "/stopncii/v1/FetchHashes", params={"startTimestamp": 10, "pageSize": 2}, headers=feed
    ).json()
    seen = [x["hashValue"] for x in r["hashRecords"]]
    submit(client, auth, *(signal("md5", f"t{i}", "clear") for i in range(3)))
    token = r["nextPageToken"]
    while token:
        r = client.get(
            "/stopncii/v1/FetchHashes",
            params={"startTimestamp": 10, "pageSize": 2, "nextPageToken": token},
            headers=feed,
        ).json()
        seen += [x["hashValue"] for x in r["hashRecords"]]
        token = r["nextPageToken"]
    assert len(seen) == len(set(seen)) == 8
    bad = client.get("/stopncii/v1/FetchHashes", params={"nextPageToken": "s1.x.y"}, headers=feed)
    assert bad.status_code == 400


def test_changes_carry_signed_retractions_and_expiry(client, auth, make_key, node):
    from app.crypto.keys import VerifierKey
    from app.crypto.records import verify_record

    feed = make_key("feed")
    a, _ = submit(client, auth, signal("pdq", "x", "clear"), signal("md5", "y", "clear"))
    client.post(f"/v1/signals/{a}/retract", json={"reason": "test"}, headers=auth)
    items = _changes_all(client, feed)
    assert [i["record"]["kind"] for i in items] == ["signal", "retraction"]
    assert items[1]["record"]["signal"]["id"] == a
    pinned = VerifierKey.parse(node.verifier_key)
    for item in items:
        verify_record(item["record"], lambda o: pinned if o == pinned.origin else None)
    seqs = [i["seq"] for i in items]
    assert seqs == sorted(seqs)

    r = client.get(
        "/v1/changes/expired",
        params={"since": "2000-01-01T00:00:00Z", "until": "2999-01-01T00:00:00Z"},
        headers=feed,
    )
    assert r.status_code == 200 and r.json()["items"] == []  # until is capped at now
    assert client.get("/v1/changes/expired", params={"since": "x"}, headers=feed).status_code == 400


def test_taxii_discovery_and_stix_validity(client, auth, make_key):
    ids = one_of_each(client, auth)
    (gone,) = submit(client, auth, signal("sha256", "gone", "clear"))
    client.post(f"/v1/signals/{gone}/retract", json={"reason": "test"}, headers=auth)
    key = make_key("feed", member=True)["Authorization"].removeprefix("Bearer ")
    basic = {"Authorization": "Basic " + base64.b64encode(f"me:{key}".encode()).decode()}

    d = client.get("/taxii2/", headers=basic)
    assert d.status_code == 200 and d.headers["content-type"] == TAXII
    assert d.json()["api_roots"][0].endswith("/taxii2/signet/")
    root = client.get("/taxii2/signet/", headers=basic).json()
    assert root["versions"] == [TAXII]
    cids = _collections(client, basic)
    c = client.get(f"/taxii2/signet/collections/{cids['ncii']}/", headers=basic).json()
    assert c["can_read"] and not c["can_write"]
    assert client.get("/taxii2/signet/collections/nope/", headers=basic).status_code == 404

    objs = _taxii_all(client, basic, cids["all"])
    assert len(objs) == len(ids["clear"]) + len(ids["green"]) + 1
    for o in objs:
        parsed = stix2.parse(o, allow_custom=True, version="2.1")
        assert parsed.type == "indicator"
    by_type = {
        o["x_signet_type"]: o
        for o in objs
        if not o["revoked"] and "94868c89" in o["object_marking_refs"][0]
    }
    assert by_type["pdq"]["pattern"].startswith("[file:hashes.PDQ = '")
    assert by_type["md5"]["pattern"].startswith("[file:hashes.MD5 = '")
    assert by_type["sha256"]["pattern"].startswith("[file:hashes.'SHA-256' = '")
    assert by_type["domain"]["pattern"] == "[domain-name:value = 'clear-domain.example']"
    revoked = [o for o in objs if o["revoked"]]
    assert len(revoked) == 1 and revoked[0]["x_signet_record"]["id"] == gone
    markings = {m for o in objs for m in o["object_marking_refs"]}
    assert markings == {
        "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
        "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    }

    # added_after resumes strictly after the last date_added seen.
    first = client.get(
        f"/taxii2/signet/collections/{cids['all']}/objects/", params={"limit": 3}, headers=basic
    )
    last = first.headers["X-TAXII-Date-Added-Last"]
    rest = client.get(
        f"/taxii2/signet/collections/{cids['all']}/objects/",
        params={"added_after": last},
        headers=basic,
    ).json()["objects"]
    assert [o["id"] for o in first.json()["objects"] + rest] == [o["id"] for o in objs]
    none = client.get(
        f"/taxii2/signet/collections/{cids['all']}/objects/",
        params={"match[type]": "malware"},
        headers=basic,
    ).json()
    assert none == {"more": False, "objects": []}


def test_junk_cursors_are_400_not_500(client, auth, make_key):
    one_of_each(client, auth)
    feed = make_key("feed")
    fn = _fn_key(feed)
    cid = _collections(client, feed)["all"]
    cases = [
        ("/stopncii/v1/FetchHashes", {"nextPageToken": "s1.99999999999999999999999.1"}, fn),
        ("/stopncii/v1/FetchHashes", {"nextPageToken": "s1.².1"}, fn),
        ("/stopncii/v1/FetchHashes", {"startTimestamp": 10**15}, fn),
        (
            "/v1/changes/expired",
            {"since": "2020-01-01T00:00:00Z", "after": "e1.9" + "9" * 40 + ".1"},
            feed,
        ),
        ("/v1/changes/expired", {"since": "2020-01-01T00:00:00Z", "until": "nope"}, feed),
        (f"/taxii2/signet/collections/{cid}/objects/", {"next": "9" * 30}, feed),
        (
            f"/taxii2/signet/collections/{cid}/objects/",
            {"added_after": "9999-12-31T23:59:59.999999Z"},
            feed,
        ),
        (f"/taxii2/signet/collections/{cid}/objects/", {"added_after": "yesterday"}, feed),
    ]
    for path, params, headers in cases:
        r = client.get(path, params=params, headers=headers)
        assert r.status_code < 500, (path, params, r.text)


def test_page_bookkeeping_survives_a_write_between_its_read_and_its_write(node, monkeypatch):
    """FetchHashes stores each page it serves (read the key's last page, then insert). On
    SQLite that read-then-write, in a deferred transaction, failed at once with "database is
    locked" (a 500) whenever any other write committed in between; the full suite hit it with
    group commit on. Another connection now writes right after the read: the page must still
    be stored (the other writer waits, or gives up, since the page's transaction took the
    write lock up front)."""
    import sqlite3

    from app.services import apikeys, feeds

    if not node.db.is_sqlite:
        pytest.skip("a SQLite locking rule")
    path = node.settings.database_url.removeprefix("sqlite:///")
    setup = sqlite3.connect(path)
    with setup:
        setup.execute("CREATE TABLE other_writer (x INTEGER)")
    setup.close()
    key = apikeys.create(node, "feed", ["feed"], True)
    real = feeds.q.last_stopncii_set_ts
    interleaved: list[str] = []

    def read_then_another_write(session: Any, key_id: int) -> Any:
        out = real(session, key_id)
        other = sqlite3.connect(path, timeout=0.2)
        try:
            with other:
                other.execute("INSERT INTO other_writer VALUES (1)")
            interleaved.append("committed")
        except sqlite3.OperationalError:
            interleaved.append("waited")  # the page's transaction holds the write lock
        finally:
            other.close()
        return out

    monkeypatch.setattr(feeds.q, "last_stopncii_set_ts", read_then_another_write)
    set_ts = feeds._record_page(node, key.id, 1, 0, 10, 10)
    assert set_ts > 0 and interleaved == ["waited"]
