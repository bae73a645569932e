"""A real two-worker node: Prometheus metrics add up over both workers and sit behind the
`metrics` scope, JSON log lines carry the request id echoed in X-Request-ID, and the API docs
and their assets are served by the node itself (no outside host)."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import httpx
import pytest

from .node_proc import NodeProc, free_port, serve_process

pytestmark = pytest.mark.e2e

PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"


def _value(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_two_worker_metrics_logs_and_docs(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SIGNET_", "PROMETHEUS"))},
        "SIGNET_DATA_DIR": str(tmp_path / "data"),
        "SIGNET_PORT": str(port),
        "SIGNET_ORIGIN": "obs.example",
        "SIGNET_BACKGROUND": "false",
        "SIGNET_LOG_LEVEL": "info",
        "SIGNET_LOG_FORMAT": "json",
    }
    log = tmp_path / "serve.log"
    with serve_process(env, log, "--workers", "2") as proc:
        node = NodeProc(f"http://127.0.0.1:{port}", port, env, proc, log)
        deadline = time.monotonic() + 30
        while len(node.worker_pids()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        submit = node.create_key("submit,match")
        scraper = node.create_key("metrics")
        seen: set[int] = set()
        sent = 0
        while (len(seen) < 2 or sent < 6) and sent < 200:
            code = PDQ[:-4] + f"{sent:04x}"
            status, body, pid = node.post_fresh(
                "/v1/signals",
                {
                    "signals": [
                        {"type": "pdq", "value": code, "quality": 100, "categories": ["csam"]}
                    ]
                },
                submit,
            )
            assert status == 200 and body["created"] == 1, body
            sent += 1
            if pid is not None:
                seen.add(pid)
        assert len(seen) == 2, "requests did not reach both workers"
        status, body, _ = node.post_fresh(
            "/v1/match", {"queries": [{"type": "pdq", "value": PDQ}]}, submit
        )
        assert status == 200

        url = node.url
        # Behind the metrics scope: a submit key is refused, a metrics key is not.
        assert (
            httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {submit}"}).status_code
            == 403
        )
        text = ""
        for _ in range(2):  # scrape both workers (new connections): each adds up both
            text = httpx.get(
                url + "/metrics", headers={"Authorization": f"Bearer {scraper}"}, timeout=10
            ).text
            got = _value(text, "signet_http_requests_total", route="/v1/signals", status="200")
            assert got == sent, (got, sent)
            assert _value(text, "signet_submissions_total", type="pdq", status="created") == sent
        assert (
            _value(text, "signet_http_request_duration_seconds_count", route="/v1/signals") == sent
        )
        assert 'le="0.1"' in text
        assert _value(text, "signet_match_queries_total", type="pdq") == 1
        assert _value(text, "signet_match_hits_total", type="pdq") >= 1
        assert "signet_checkpoint_age_seconds" in text
        assert "signet_witness_cosignatures" in text

        # Request ids: echoed, and on the log line of that request.
        r = httpx.post(
            url + "/federation/v1/notify", content=b"{}", headers={"X-Request-ID": "rid-e2e-42"}
        )
        assert r.status_code >= 400 and r.headers["x-request-id"] == "rid-e2e-42"
        fresh = httpx.get(url + "/healthz").headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{16}", fresh)

        # Docs with no outside host: the page names only local assets, and they are served.
        docs = httpx.get(url + "/docs").text
        assert "cdn" not in docs.lower() and "/docs/assets/swagger-ui-bundle.js" in docs
        assert httpx.get(url + "/docs/assets/swagger-ui-bundle.js").status_code == 200
        assert httpx.get(url + "/docs/assets/swagger-ui.css").status_code == 200
        home = httpx.get(url + "/")
        assert (
            home.status_code == 200 and "obs.example" in home.text and 'href="/docs"' in home.text
        )
        time.sleep(0.5)
    lines = [line for line in log.read_text().splitlines() if line.startswith("{")]
    assert lines, log.read_text()[-2000:]
    records = [json.loads(line) for line in lines]
    assert all("request_id" in r and "level" in r for r in records)
    assert any(r["request_id"] == "rid-e2e-42" for r in records), records[-5:]
