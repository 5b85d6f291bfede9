"""Prometheus metrics (``/metrics``, ``prometheus_client`` text format).

Two sources:

- **Requests** (``serialread_http_requests_total{view,method,status}``,
  ``serialread_http_request_duration_seconds{view}``): counted by the request middleware
  (``ocrapp.observability``) in each web process. With several web processes (gunicorn
  workers) set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory shared by them (the devstack
  uses ``var/prometheus``, emptied at each start): every process writes its samples there and a
  scrape of any of them sums all (prometheus_client's multiprocess mode). Without it a scrape
  shows the process that answered.
- **State**, read at scrape time from PostgreSQL and Redis (``StateCollector``), so it is right
  whichever web process answers and wherever the workers run: the OCR queue depth (Redis
  ``LLEN``), captures by status, failed captures by failure code, images purged by retention,
  the review backlog, live workers (heartbeats) and the read latency per pipeline stage.

The stage latency (``serialread_read_stage_seconds{stage}``) is a histogram built from the
``timings_ms`` every ``Read`` row stores: reads are never deleted or changed, so the counts only
grow, as a Prometheus histogram's must. Each process folds the rows it has counted (older than
``_SETTLE_SECONDS``, so a transaction still open cannot be skipped) into its running totals and
only reads newer rows at the next scrape.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

log = logging.getLogger(__name__)

REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_SETTLE_SECONDS = 120

REQUESTS = Counter(
    "serialread_http_requests",
    "HTTP requests answered, by view (URL name), method and status.",
    ["view", "method", "status"],
    registry=None,
)
REQUEST_LATENCY = Histogram(
    "serialread_http_request_duration_seconds",
    "Time to answer an HTTP request, by view (URL name).",
    ["view"],
    buckets=REQUEST_BUCKETS,
    registry=None,
)


def multiprocess_dir() -> str:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


def observe_request(*, view: str, method: str, status: int, seconds: float) -> None:
    REQUESTS.labels(view=view, method=method, status=str(status)).inc()
    REQUEST_LATENCY.labels(view=view).observe(seconds)


class _LocalRequests:
    """This process's request metrics (single-process mode)."""

    def collect(self):
        yield from REQUESTS.collect()
        yield from REQUEST_LATENCY.collect()


class _StageTotals:
    """Running per-stage histogram totals of the reads this process has folded in."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.upto_id = 0
        self.stages: dict[str, list[float]] = {}  # stage -> [count, sum_s, bucket counts...]

    @staticmethod
    def query(low_id: int, high_id: int | None) -> dict[str, list[float]]:
        from django.db import connection

        buckets = ", ".join(
            f"count(*) FILTER (WHERE (t.value)::float8 <= {b * 1000.0!r})" for b in STAGE_BUCKETS
        )
        sql = (
            f"SELECT t.key, count(*), coalesce(sum((t.value)::float8), 0) / 1000.0, {buckets} "
            "FROM ocrapp_read r CROSS JOIN LATERAL jsonb_each(r.timings_ms) t "
            "WHERE jsonb_typeof(r.timings_ms) = 'object' AND jsonb_typeof(t.value) = 'number' "
            "AND r.id > %s" + (" AND r.id <= %s" if high_id is not None else "") + " GROUP BY t.key"
        )
        params = [low_id] + ([high_id] if high_id is not None else [])
        with connection.cursor() as cur:
            cur.execute(sql, params)
            return {row[0]: [float(v) for v in row[1:]] for row in cur.fetchall()}

    def snapshot(self) -> dict[str, list[float]]:
        """Totals over every read: the folded ones plus the rows not yet settled."""
        from datetime import timedelta

        from django.utils import timezone

        from ocrapp.models import Read

        with self.lock:
            cutoff = timezone.now() - timedelta(seconds=_SETTLE_SECONDS)
            settled = (
                Read.objects.filter(created_at__lt=cutoff, id__gt=self.upto_id)
                .order_by("-id")
                .values_list("id", flat=True)
                .first()
            )
            if settled is not None:
                _add(self.stages, self.query(self.upto_id, settled))
                self.upto_id = settled
            totals = {k: list(v) for k, v in self.stages.items()}
            low = self.upto_id
        _add(totals, self.query(low, None))
        return totals


def _add(into: dict[str, list[float]], more: dict[str, list[float]]) -> None:
    for stage, values in more.items():
        have = into.setdefault(stage, [0.0] * len(values))
        for i, v in enumerate(values):
            have[i] += v


STAGES = _StageTotals()


def queue_depth(client, queue: str) -> int:
    """Messages waiting in a kombu Redis queue: its list plus its priority lists."""
    depth = client.llen(queue)
    for key in client.scan_iter(match=f"{queue}\x06\x16*", count=100):
        depth += client.llen(key)
    return int(depth)


class StateCollector:
    """Gauges and the stage histogram, computed at scrape time (see the module docstring).
    A source that fails is skipped and ``serialread_metrics_source_up{source}`` says 0."""

    def describe(self):  # nothing to check at registration (and no query then)
        return []

    def collect(self) -> Iterator:
        up = GaugeMetricFamily(
            "serialread_metrics_source_up",
            "1 when the source of the state metrics answered this scrape.",
            labels=["source"],
        )
        try:
            families = list(self._database())
            up.add_metric(["database"], 1)
        except Exception as exc:
            log.warning("metrics: database not read (%s: %s)", type(exc).__name__, exc)
            families = []
            up.add_metric(["database"], 0)
        yield from families
        try:
            families = list(self._broker())
            up.add_metric(["broker"], 1)
        except Exception as exc:
            log.warning("metrics: broker not read (%s: %s)", type(exc).__name__, exc)
            families = []
            up.add_metric(["broker"], 0)
        yield from families
        yield up

    def _database(self) -> Iterator:
        from django.db.models import Count

        from ocrapp import selectors
        from ocrapp.models import Capture

        by_status = GaugeMetricFamily(
            "serialread_captures", "Captures by status.", labels=["status"]
        )
        counts = dict(
            Capture.objects.order_by()
            .values_list("status")
            .annotate(n=Count("pk"))
            .values_list("status", "n")
        )
        for status in Capture.Status.values:
            by_status.add_metric([status], counts.get(status, 0))
        yield by_status

        failed = GaugeMetricFamily(
            "serialread_captures_failed",
            "Captures that ended FAILED, by failure code (the reason).",
            labels=["reason"],
        )
        rows = (
            Capture.objects.filter(status=Capture.Status.FAILED)
            .order_by()
            .values_list("failure_code")
            .annotate(n=Count("pk"))
            .values_list("failure_code", "n")
        )
        for code, n in rows:
            failed.add_metric([code or "unknown"], n)
        yield failed

        yield GaugeMetricFamily(
            "serialread_images_purged",
            "Captures whose image was deleted by retention (purge_images).",
            value=Capture.objects.filter(image_purged_at__isnull=False).count(),
        )
        yield GaugeMetricFamily(
            "serialread_review_backlog",
            "Reads waiting in the review queue (all stations).",
            value=selectors.review_backlog_count(),
        )

        stages = HistogramMetricFamily(
            "serialread_read_stage_seconds",
            "Read latency per pipeline stage (from each read's stored timings_ms).",
            labels=["stage"],
        )
        for stage, values in sorted(STAGES.snapshot().items()):
            count, total, cumulative = values[0], values[1], values[2:]
            buckets = [(_le(b), c) for b, c in zip(STAGE_BUCKETS, cumulative, strict=True)]
            buckets.append(("+Inf", count))
            stages.add_metric([stage], buckets, sum_value=total)
        yield stages

    def _broker(self) -> Iterator:
        from ocrapp import health
        from workers.tasks import OCR_QUEUE

        client = health.redis_client()
        depth = GaugeMetricFamily(
            "serialread_queue_depth", "Messages waiting in a Celery queue.", labels=["queue"]
        )
        depth.add_metric([OCR_QUEUE], queue_depth(client, OCR_QUEUE))
        yield depth
        beats = health.worker_heartbeats(client)
        yield GaugeMetricFamily(
            "serialread_workers",
            "Worker processes with a live heartbeat.",
            value=len(beats),
        )
        yield GaugeMetricFamily(
            "serialread_workers_models_loaded",
            "Worker processes with a live heartbeat and their models loaded.",
            value=sum(1 for b in beats if b.get("models_loaded")),
        )


def _le(bound: float) -> str:
    return repr(float(bound))


def exposition() -> bytes:
    """The text exposition of every metric (a fresh registry per scrape)."""
    registry = CollectorRegistry()
    if multiprocess_dir():
        MultiProcessCollector(registry)
    else:
        registry.register(_LocalRequests())
    registry.register(StateCollector())
    t0 = time.perf_counter()
    body = generate_latest(registry)
    log.debug("metrics scraped in %.3fs", time.perf_counter() - t0)
    return body
