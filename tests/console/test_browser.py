"""The console in a real browser: Debian's chromium, driven by Playwright, against a real
`signet serve` process on loopback.

Never downloads a browser: it launches the distribution's `chromium` (`apt-get install -y
chromium`; `.ci/run` installs it). Outside CI a machine without chromium skips these tests
and says why; in CI (`CI` set) a missing browser is a failure.

With `SIGNET_SCREENSHOTS=DIR` set, each page is saved as DIR/<page>.png (how the images in
docs/console.md were made).
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.crypto.keys import NodeKey
from tests.e2e.node_proc import SIGNET, NodeProc, running_node

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium")
IN_CI = bool(os.environ.get("CI"))
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = os.environ.get("SIGNET_SCREENSHOTS")

if CHROMIUM is None and not IN_CI:
    pytest.skip(
        "chromium is not installed (apt-get install -y chromium); CI installs it and runs these",
        allow_module_level=True,
    )

sync_api = pytest.importorskip("playwright.sync_api") if not IN_CI else None
if sync_api is None:
    import playwright.sync_api as sync_api  # in CI a missing package is an error, not a skip


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProc]:
    with running_node(tmp_path_factory.mktemp("console"), origin="console.example") as n:
        yield n


@pytest.fixture(scope="module")
def admin_key(node: NodeProc) -> str:
    return node.create_key("admin")


@pytest.fixture(scope="module")
def verifier_key(node: NodeProc) -> str:
    # The auditor's pinned key, read from the node's key file: never from what it serves.
    data = Path(node.env["SIGNET_DATA_DIR"])
    return NodeKey.load(data / "node.key").verifier_key("console.example")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    assert CHROMIUM is not None, "chromium is required in CI (apt-get install -y chromium)"
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


class Page:
    """A browser tab that records console errors and uncaught exceptions."""

    def __init__(self, browser: Any, base: str) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.base = base
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def goto(self, path: str) -> Any:
        resp = self.page.goto(self.base + path)
        assert resp is not None
        return resp

    def shot(self, name: str) -> None:
        if SHOTS:
            Path(SHOTS).mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)

    def sign_in(self, key: str) -> None:
        self.goto("/console/login")
        self.shot("login")
        self.page.fill("input[name=api_key]", key)
        self.page.click("button[type=submit]")
        self.page.wait_for_url(self.base + "/console/")


def _submit(node: NodeProc, key: str, value: str, tlp: str = "clear") -> str:
    r = httpx.post(
        node.url + "/v1/signals",
        json={
            "signals": [
                {"type": "md5", "value": value, "categories": ["csam"], "audience": {"tlp": tlp}}
            ]
        },
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return str(r.json()["items"][0]["id"])


def test_every_page_renders_without_console_errors(
    node: NodeProc, admin_key: str, browser: Any
) -> None:
    _submit(node, admin_key, "1" * 32)
    _submit(node, admin_key, "2" * 32, tlp="green")
    tab = Page(browser, node.url)
    tab.sign_in(admin_key)
    for name, path in [
        ("overview", "/console/"),
        ("signals", "/console/signals"),
        ("peers", "/console/peers"),
        ("keys", "/console/keys"),
        ("audit", "/console/audit"),
        ("log", "/console/audit/log"),
        ("report", "/console/audit/report"),
    ]:
        resp = tab.goto(path)
        assert resp.status == 200, path
        assert tab.page.locator("h1").count() == 1
        tab.shot(name)
    assert tab.errors == []


def test_find_and_retract_a_signal_submitted_through_the_api(
    node: NodeProc, admin_key: str, browser: Any
) -> None:
    value = "abcdef" + "0" * 26
    uid = _submit(node, admin_key, value)
    tab = Page(browser, node.url)
    tab.sign_in(admin_key)
    tab.goto("/console/signals")
    tab.page.fill("input[name=q]", "abcdef")
    tab.page.click("form.filters button[type=submit]")
    tab.page.click(f"text={uid}")
    assert tab.page.locator("#record-verified").inner_text().startswith("verifies")
    tab.shot("signal")
    tab.page.fill("input[name=reason]", "entered in error")
    tab.page.click("button:has-text('Retract')")
    tab.page.wait_for_url(f"**/console/signals/{uid}?done=retracted")
    assert tab.page.locator("#status").inner_text() == "retracted"
    got = httpx.get(
        f"{node.url}/v1/signals/{uid}", headers={"Authorization": f"Bearer {admin_key}"}
    )
    assert got.json()["status"] == "retracted"
    assert got.json()["retract_reason"] == "entered in error"
    assert tab.errors == []


def test_form_post_without_csrf_token_is_refused(
    node: NodeProc, admin_key: str, browser: Any
) -> None:
    uid = _submit(node, admin_key, "3" * 32)
    tab = Page(browser, node.url)
    tab.sign_in(admin_key)
    # The browser's own cookies (session and CSRF cookie) but no token in the form.
    r = tab.context.request.post(
        f"{node.url}/console/signals/{uid}/retract", form={"reason": "forged"}
    )
    assert r.status == 403
    r = tab.context.request.post(
        f"{node.url}/console/signals/{uid}/retract", form={"reason": "forged", "csrf": "x" * 43}
    )
    assert r.status == 403
    got = httpx.get(
        f"{node.url}/v1/signals/{uid}", headers={"Authorization": f"Bearer {admin_key}"}
    )
    assert got.json()["status"] == "active"


def _verify(tab: Page, vkey: str) -> tuple[str, str]:
    tab.page.fill("#vkey", vkey)
    # Clear the previous verdict first, so the wait below sees this run's, not the last one's.
    tab.page.evaluate("document.getElementById('verdict').className = 'verdict idle'")
    tab.page.click("#verify")
    tab.page.wait_for_selector("#verdict.pass, #verdict.fail", timeout=60_000)
    verdict = tab.page.locator("#verdict")
    return str(verdict.get_attribute("class")), verdict.inner_text()


def test_in_browser_audit_passes_then_goes_red_after_a_row_is_altered(
    node: NodeProc, admin_key: str, verifier_key: str, browser: Any
) -> None:
    _submit(node, admin_key, "4" * 32)
    tab = Page(browser, node.url)
    tab.sign_in(admin_key)
    tab.goto("/console/audit")
    cls, text = _verify(tab, verifier_key)
    assert "pass" in cls, text
    tab.shot("audit-verified")

    # A wrong key is a failure, not a pass: the script does not take the node's word.
    other = NodeKey.generate().verifier_key("console.example")
    cls, text = _verify(tab, other)
    assert "fail" in cls and "not signed by" in text

    # The log grows; the next visit checks consistency with the remembered checkpoint.
    _submit(node, admin_key, "5" * 32)
    httpx.post(node.url + "/v1/log/checkpoint", headers={"Authorization": f"Bearer {admin_key}"})
    tab.goto("/console/audit")
    cls, text = _verify(tab, verifier_key)
    assert "pass" in cls, text
    assert "Consistent with the checkpoint remembered" in tab.page.locator("#steps").inner_text()

    # Inclusion of one entry, proven in the browser.
    tab.goto("/console/audit/log?start=0")
    tab.page.fill("#vkey", verifier_key)
    tab.page.click("#entry-1 button.prove")
    tab.page.wait_for_selector("#verdict.pass, #verdict.fail")
    assert "INCLUDED" in tab.page.locator("#verdict").inner_text()
    assert tab.errors == []

    db = sqlite3.connect(Path(node.env["SIGNET_DATA_DIR"]) / "signet.db")
    try:
        with db:
            (idx,) = db.execute(
                "SELECT idx FROM log_entry WHERE kind = 'signal' AND data LIKE '%4444%'"
            ).fetchone()
            db.execute(
                "UPDATE log_entry SET data = replace(data, '\"csam\"', '\"spam\"') WHERE idx = ?",
                (idx,),
            )
    finally:
        db.close()
    tab.goto("/console/audit")
    cls, text = _verify(tab, verifier_key)
    assert "fail" in cls, text
    assert f"entry {idx}" in text and "altered" in text
    tab.shot("audit-failed")

    tab.goto(f"/console/audit/log?start={idx}")
    tab.page.fill("#vkey", verifier_key)
    tab.page.click(f"#entry-{idx} button.prove")
    tab.page.wait_for_selector("#verdict.pass, #verdict.fail")
    assert "FAILED" in tab.page.locator("#verdict").inner_text()
    assert "unproved" in str(tab.page.locator(f"#entry-{idx}").get_attribute("class"))
    db = sqlite3.connect(Path(node.env["SIGNET_DATA_DIR"]) / "signet.db")
    try:
        with db:  # put it back for the tests after this one
            db.execute(
                "UPDATE log_entry SET data = replace(data, '\"spam\"', '\"csam\"') WHERE idx = ?",
                (idx,),
            )
    finally:
        db.close()


def test_audit_report_cli_is_byte_identical_and_matches_the_console(
    node: NodeProc, admin_key: str, verifier_key: str
) -> None:
    audit_key = node.create_key("audit")
    httpx.post(node.url + "/v1/log/checkpoint", headers={"Authorization": f"Bearer {admin_key}"})

    def report(fmt: str = "json") -> str:
        out = subprocess.run(
            [
                SIGNET,
                "audit",
                "report",
                node.url,
                "--key",
                verifier_key,
                "--token",
                audit_key,
                "--format",
                fmt,
            ],
            env=node.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    first, second = report(), report()
    assert first == second
    assert '"published"' in first and '"csam"' in first
    assert report("md").startswith("# Transparency report: console.example")
    assert "<svg" in report("html")


def test_operator_pins_a_peer_and_a_retraction_reaches_it_all_from_the_console(
    node: NodeProc,
    admin_key: str,
    verifier_key: str,
    browser: Any,
    tmp_path: Path,
) -> None:
    """The issue's walkthrough: pin a peer, watch a signal arrive, retract it, see the
    retraction reach the peer. Both nodes are real processes; every step is a console click
    except publishing the signal (a platform does that through the API)."""
    with running_node(tmp_path, origin="peer.example") as peer:
        peer_admin = peer.create_key("admin")
        peer_vkey = NodeKey.load(Path(peer.env["SIGNET_DATA_DIR"]) / "node.key").verifier_key(
            "peer.example"
        )
        ours, theirs = Page(browser, node.url), Page(browser, peer.url)
        ours.sign_in(admin_key)
        theirs.sign_in(peer_admin)
        for tab, url, vkey in ((ours, peer.url, peer_vkey), (theirs, node.url, verifier_key)):
            tab.goto("/console/peers")
            tab.page.fill("input[name=url]", url)
            tab.page.fill("input[name=verifier_key]", vkey)
            tab.page.click("button:has-text('Pin peer')")
            tab.page.wait_for_url("**/console/peers?done=*")
            assert "pinned" in tab.page.locator("p.ok").inner_text()

        uid = _submit(node, admin_key, "7" * 32)

        theirs.goto("/console/peers")
        theirs.page.click("button:has-text('Sync now')")
        theirs.page.wait_for_url("**/console/peers?done=*")
        # Everything A shares so far arrives (earlier tests' signals too), ours among them.
        assert re.search(r"[1-9]\d* applied", theirs.page.locator("p.ok").inner_text())
        theirs.shot("peers-synced")
        # The policy field shows the stored policy in the form it takes back.
        theirs.page.fill("input[name=policy]", "categories=csam;types=*;tlp=green,clear")
        theirs.page.click("button:has-text('Save policy')")
        theirs.page.wait_for_url("**/console/peers?done=policy*")
        assert theirs.page.locator("input[name=policy]").first.input_value() == (
            "categories=csam;types=*;tlp=clear,green"
        )
        theirs.goto(f"/console/signals?origin=console.example&q={uid}")
        theirs.page.click(f"text={uid}")
        assert theirs.page.locator("#status").inner_text() == "active"
        assert "verifies" in theirs.page.locator("#record-verified").inner_text()

        ours.goto(f"/console/signals/{uid}")
        ours.page.fill("input[name=reason]", "not what we thought")
        ours.page.click("button:has-text('Retract')")
        ours.page.wait_for_url("**?done=retracted")

        theirs.goto("/console/peers")
        theirs.page.click("button:has-text('Sync now')")
        theirs.page.wait_for_url("**/console/peers?done=*")
        theirs.goto(f"/console/signals/{uid}?origin=console.example")
        assert theirs.page.locator("#status").inner_text() == "retracted"
        assert "signed retraction verifies" in theirs.page.content()

        ours.goto("/console/peers")
        row = ours.page.locator("tr", has_text="peer.example")
        assert "ok" in row.inner_text() or "not pulled yet" in row.inner_text()
        assert ours.errors == [] and theirs.errors == []


# The browser's own proof and canonicalisation code, run in chromium against the same vectors
# the Python verifier passes (tests/vectors: transparency-dev/merkle, cyberphone JCS).

_VECTOR_JS = """async (v) => {
  const m = await import("/console/static/audit.js");
  const u8 = (a) => Uint8Array.from(a);
  const eq = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
  const out = { inclusion: [], consistency: [], jcs: [], roots: [] };
  for (const c of v.inclusion) {
    let ok;
    try {
      const r = await m.rootFromInclusion(u8(c.leaf), c.index, c.size, c.proof.map(u8));
      ok = eq(r, u8(c.root));
    } catch (e) { ok = false; }
    out.inclusion.push([c.name, ok]);
  }
  for (const c of v.consistency) {
    let ok = true;
    try {
      await m.verifyConsistency(c.size1, c.size2, c.proof.map(u8), u8(c.root1), u8(c.root2));
    } catch (e) { ok = false; }
    out.consistency.push([c.name, ok]);
  }
  for (const c of v.jcs) out.jcs.push([c.name, m.canonical(JSON.parse(c.input)) === c.output]);
  const enc = new TextEncoder();
  const leaves = [];
  for (let n = 0; n < v.leaves.length; n++) {
    const data = u8(v.leaves[n]);
    const h = new Uint8Array(await crypto.subtle.digest("SHA-256", Uint8Array.from([0, ...data])));
    leaves.push(h);
    out.roots.push(eq(await m.rootFromLeaves(leaves.slice()), u8(v.roots[n + 1])));
  }
  return out;
}"""


def test_browser_proof_code_passes_the_rfc_vectors(node: NodeProc, browser: Any) -> None:
    import base64
    import json

    from tests.crypto._vectors import VECTORS, merkle_cases

    def raw(s: str) -> list[int]:
        return list(base64.b64decode(s))

    inclusion = [
        {
            "name": name,
            "want": not c.get("wantErr", False),
            "leaf": raw(c["leafHash"]),
            "index": c["leafIdx"],
            "size": c["treeSize"],
            "proof": [raw(p) for p in c.get("proof") or []],
            "root": raw(c["root"]),
        }
        for name, c in merkle_cases("inclusion")
    ]
    consistency = [
        {
            "name": name,
            "want": not c.get("wantErr", False),
            "size1": c["size1"],
            "size2": c["size2"],
            "proof": [raw(p) for p in c.get("proof") or []],
            "root1": raw(c["root1"]),
            "root2": raw(c["root2"]),
        }
        for name, c in merkle_cases("consistency")
    ]
    jcs = [
        {
            "name": p.name,
            "input": p.read_text(encoding="utf-8"),
            "output": (VECTORS / "jcs" / "output" / p.name).read_text(encoding="utf-8"),
        }
        for p in sorted((VECTORS / "jcs" / "input").glob("*.json"))
    ]
    roots = json.loads((VECTORS / "merkle" / "root_hashes.json").read_text())
    tab = Page(browser, node.url)
    tab.goto("/console/login")
    got = tab.page.evaluate(
        _VECTOR_JS,
        {
            "inclusion": inclusion,
            "consistency": consistency,
            "jcs": jcs,
            "leaves": [list(bytes.fromhex(x)) for x in roots["leaf_inputs"]],
            "roots": [list(bytes.fromhex(x)) for x in roots["root_hashes"]],
        },
    )
    assert len(got["inclusion"]) == len(inclusion) > 10
    assert len(got["consistency"]) == len(consistency) > 10
    wrong = [
        name
        for cases, results in ((inclusion, got["inclusion"]), (consistency, got["consistency"]))
        for case, (name, ok) in zip(cases, results, strict=True)
        if ok != case["want"]
    ]
    assert wrong == []
    assert all(ok for _, ok in got["jcs"]), got["jcs"]
    assert all(got["roots"]) and len(got["roots"]) == len(roots["leaf_inputs"])

    # Base64 key material may hold '+', the separator of the key's other parts.
    seed = 0
    while (
        "+"
        not in (
            vkey := NodeKey.from_seed(seed.to_bytes(32, "big")).verifier_key("a.example")
        ).split("+", 2)[2]
    ):
        seed += 1
    parsed = tab.page.evaluate(
        """async (k) => {
          const m = await import("/console/static/audit.js");
          const v = await m.parseVerifierKey(k, 1);
          return [v.name, Array.from(v.hash)];
        }""",
        vkey,
    )
    assert parsed == ["a.example", list(bytes.fromhex(vkey.split("+")[1]))]
    assert tab.errors == []
