"""Logs, metrics and traces that fit the tools operators already run.

Logs: `SIGNET_LOG_FORMAT=json` (one JSON object per line) or `text`; every line carries the
request id of the request it belongs to (`X-Request-ID` from the client or a proxy when it is a
sane token, else a fresh one; echoed in the response). Nothing here logs bodies, queries or keys.

Metrics (Prometheus, `GET /metrics`, API-key scope `metrics`):
- HTTP: `signet_http_requests_total{method,route,status}` and the latency histogram
  `signet_http_request_duration_seconds{method,route}` (route = the path template, never the
  raw path, so ids do not explode the series);
- domain: `signet_submissions_total{type,status}`, `signet_match_queries_total{type}`,
  `signet_match_hits_total{type}`; from the database at scrape time, so every worker agrees:
  per-peer sync state (`signet_peer_*`, received/refused/delivered), `signet_checkpoint_age_
  seconds`, `signet_witness_cosignatures{witness}`.
Under `signet serve --workers N` counters live in `PROMETHEUS_MULTIPROC_DIR` (set by `serve`
to `<data dir>/prometheus`, emptied at start) and a scrape adds up every worker.

Traces: when `opentelemetry-sdk` (the `otel` extra) is importable and
`OTEL_EXPORTER_OTLP_ENDPOINT` is set, each request is a span exported over OTLP/HTTP; without
them nothing is imported and nothing costs.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import random
import re
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from app.services.node import Node

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("signet_request_id", default="-")


# --- logs ------------------------------------------------------------------------------------


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def log_handler(fmt: str) -> logging.Handler:
    handler = logging.StreamHandler()
    handler.addFilter(_RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s")
        )
    return handler


# --- metrics ---------------------------------------------------------------------------------

HTTP_REQUESTS = Counter(
    "signet_http_requests", "HTTP requests answered.", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "signet_http_request_duration_seconds",
    "Time to answer an HTTP request.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SUBMISSIONS = Counter(
    "signet_submissions", "Signals submitted, by type and outcome.", ["type", "status"]
)
MATCH_QUERIES = Counter("signet_match_queries", "Match queries answered, by type.", ["type"])
MATCH_HITS = Counter("signet_match_hits", "Signals matched, by query type.", ["type"])


def _type_of(item: Any) -> str:
    t = item.get("type") if isinstance(item, dict) else getattr(item, "type", None)
    t = getattr(t, "value", t)
    return t if isinstance(t, str) and len(t) <= 32 and t.isidentifier() else "invalid"


def count_submissions(items: Iterable[Any], result: Any) -> None:
    for raw, item in zip(items, result.items, strict=False):
        SUBMISSIONS.labels(_type_of(raw), item.status).inc()


def count_matches(queries: Iterable[Any], result: Any) -> None:
    for raw, r in zip(queries, result.results, strict=False):
        t = _type_of(raw)
        MATCH_QUERIES.labels(t).inc()
        if r.matches:
            MATCH_HITS.labels(t).inc(len(r.matches))


class DatabaseCollector(Collector):
    """Figures read from the database at scrape time: the same from every worker."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:
        from sqlalchemy import func, select
        from sqlmodel import col

        from app.services.lease import all_leases
        from app.storage.models import CheckpointRow, CosignatureRow

        with self.node.db.read() as session:
            latest = session.execute(select(func.max(col(CheckpointRow.created_at)))).scalar()
            witness = col(CosignatureRow.witness)
            cosigs = session.execute(select(witness, func.count()).group_by(witness)).all()
        age = GaugeMetricFamily(
            "signet_checkpoint_age_seconds", "Seconds since this node's latest checkpoint."
        )
        if latest is not None:
            if latest.tzinfo is None:
                latest = latest.replace(tzinfo=UTC)
            age.add_metric([], max(0.0, (datetime.now(UTC) - latest).total_seconds()))
        yield age
        witnessed = GaugeMetricFamily(
            "signet_witness_cosignatures",
            "Cosignatures of our checkpoints held, by witness (peer).",
            labels=["witness"],
        )
        for witness, n in cosigs:
            witnessed.add_metric([str(witness)], float(n))
        yield witnessed
        # The leases (app/services/lease.py), so an operator of several workers or hosts can
        # see which process pulls from peers, whether anyone does (expiry in the past by more
        # than the ttl: no holder), and how often it changed hands (generation).
        holder = GaugeMetricFamily(
            "signet_lease_holder",
            "1 for the process holding the lease (host:pid:random), as stored.",
            labels=["lease", "holder"],
        )
        expires = GaugeMetricFamily(
            "signet_lease_expires_timestamp_seconds",
            "When the lease lapses unless its holder renews it (0: released).",
            labels=["lease"],
        )
        generation = GaugeMetricFamily(
            "signet_lease_generation", "Times the lease changed holder.", labels=["lease"]
        )
        for lease in all_leases(self.node.db):
            holder.add_metric([lease.name, lease.holder], 1.0)
            expires.add_metric([lease.name], lease.expires_ms / 1000)
            generation.add_metric([lease.name], float(lease.generation))
        yield holder
        yield expires
        yield generation


def render(node: Node, extra: Iterable[Collector] = ()) -> bytes:
    """The /metrics page: every worker's counters (multiprocess mode) or this process's, plus
    the database figures."""
    from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(DatabaseCollector(node))
    for collector in extra:
        registry.register(collector)
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY) + generate_latest(registry)


# --- the middleware --------------------------------------------------------------------------


class Observe:
    """ASGI middleware: request id (context + header), HTTP metrics, optional trace span."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.tracer = _tracer()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        # A request id correlates log lines; it is not a secret, so the process's Mersenne
        # Twister (reseeded in each forked child) serves: os.urandom is a system call per
        # request, ~9 % of the event loop's time under load in a profile of /v1/match.
        rid = given if _REQUEST_ID.match(given) else f"{random.getrandbits(64):016x}"
        token = request_id.set(rid)
        status = 500
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        span = None
        if self.tracer is not None:
            span = self.tracer.start_span(f"{scope['method']} request")
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            elapsed = time.perf_counter() - start
            HTTP_REQUESTS.labels(scope["method"], template, str(status)).inc()
            HTTP_LATENCY.labels(scope["method"], template).observe(elapsed)
            if span is not None:
                span.set_attribute("http.route", template)
                span.set_attribute("http.status_code", status)
                span.set_attribute("signet.request_id", rid)
                span.end()
            request_id.reset(token)


def _tracer() -> Any:
    """An OpenTelemetry tracer if the SDK is installed and an OTLP endpoint is configured."""
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return None
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        logging.getLogger("signet").info("tracing off: install signet[otel] to export spans")
        return None
    provider = TracerProvider(resource=Resource.create({"service.name": "signet"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return trace.get_tracer("signet")
