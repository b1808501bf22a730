"""Prometheus metrics of the REST service (prometheus-client), one registry per app."""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

# Latency buckets (seconds): scoring answers in well under a millisecond.
LATENCY_BUCKETS = (
    0.0002,
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    10.0,
)
CONTENT_TYPE = CONTENT_TYPE_LATEST
REQUESTS = "modelops_requests"
LATENCY = "modelops_request_duration_seconds"
ROWS = "modelops_rows_scored"


class RequestCollector(Collector):
    """Requests answered, their latency and the rows scored, for Prometheus.

    The per-request numbers are kept in plain Python and exported through
    prometheus-client's custom-collector interface, in the format its ``Counter``
    and ``Histogram`` write (``modelops_requests_total``,
    ``modelops_request_duration_seconds_bucket/_count/_sum``,
    ``modelops_rows_scored_total``; no ``_created`` series). Recording a request is
    a dict lookup, a bisect and three additions, with no lock: only the event loop
    records, and a scrape reads between two requests.
    """

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.bounds = tuple(float(bound) for bound in buckets)
        self.labels = [floatToGoString(b) for b in (*self.bounds, float("inf"))]
        # (endpoint, status) -> [count, sum of seconds, counts per bucket (+Inf last)]
        self._series: dict[tuple[str, str], list[Any]] = {}
        self.rows = 0

    def observe(self, endpoint: str, status: str, seconds: float) -> None:
        """Count one answered request and its latency."""
        series = self._series.get((endpoint, status))
        if series is None:
            series = [0, 0.0, [0] * (len(self.bounds) + 1)]
            self._series[(endpoint, status)] = series
        series[0] += 1
        series[1] += seconds
        series[2][bisect.bisect_left(self.bounds, seconds)] += 1  # le: upper bound

    def collect(self) -> Iterator[Any]:
        """The metric families, as prometheus-client's registry asks for them."""
        requests = CounterMetricFamily(
            REQUESTS,
            "HTTP requests answered, by endpoint and status.",
            labels=["endpoint", "status"],
        )
        latency = HistogramMetricFamily(
            LATENCY,
            "Time from the request's headers to its answer, by endpoint and status.",
            labels=["endpoint", "status"],
        )
        for (endpoint, status), (count, total, buckets) in list(self._series.items()):
            requests.add_metric([endpoint, status], count)
            cumulative, running = [], 0
            for label, bucket in zip(self.labels, buckets, strict=True):
                running += bucket
                cumulative.append((label, running))
            latency.add_metric([endpoint, status], cumulative, total)
        yield requests
        yield latency
        yield CounterMetricFamily(
            ROWS, "Rows scored by POST /invocations.", value=self.rows
        )

    def describe(self) -> Iterator[Any]:
        """The families without samples (the registry checks names with this)."""
        yield CounterMetricFamily(REQUESTS, "", labels=["endpoint", "status"])
        yield HistogramMetricFamily(LATENCY, "", labels=["endpoint", "status"])
        yield CounterMetricFamily(ROWS, "")


class ServiceMetrics:
    """Every metric the service exports, in its own :class:`CollectorRegistry`.

    Label values are bounded: endpoints are the routes (or ``other``), rules come
    from the contract or a fixed set, columns are contract columns (or empty).
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.requests = RequestCollector(LATENCY_BUCKETS)
        registry.register(self.requests)
        self.rejections = Counter(
            "modelops_rejections",
            "Requests refused (4xx), by the rule they broke and its contract column.",
            ["rule", "column"],
            registry=registry,
        )
        self.model_version = Gauge(
            "modelops_model_version",
            "The registered version being served (0 before the first load).",
            ["model_name", "alias"],
            registry=registry,
        )
        self.model_info = Gauge(
            "modelops_model_form",
            "1 for the form the served version is scored in (onnx or sklearn).",
            ["form"],
            registry=registry,
        )
        self.swaps = Counter(
            "modelops_alias_swaps",
            "Times a newly loaded version replaced the one served.",
            registry=registry,
        )
        self.load_failures = Counter(
            "modelops_model_load_failures",
            "Model loads that failed (the old version keeps serving), by reason.",
            ["reason"],
            registry=registry,
        )
        self.log_rows_written = Counter(
            "modelops_prediction_log_rows_written",
            "Prediction-log rows written to parquet.",
            registry=registry,
        )
        self.log_rows_dropped = Counter(
            "modelops_prediction_log_rows_dropped",
            "Prediction-log rows dropped: the queue was full, or a write failed.",
            ["reason"],
            registry=registry,
        )
        self.log_queue_rows = Gauge(
            "modelops_prediction_log_queue_rows",
            "Prediction-log rows waiting to be written.",
            registry=registry,
        )
        for reason in ("queue_full", "write_failed"):
            self.log_rows_dropped.labels(reason=reason)
        for reason in ("integrity", "load", "warm_up", "no_alias"):
            self.load_failures.labels(reason=reason)

    def observe(self, endpoint: str, status: str, seconds: float) -> None:
        """Count one answered request and its latency."""
        self.requests.observe(endpoint, status, seconds)

    def scored(self, rows: int) -> None:
        """Count rows scored."""
        self.requests.rows += rows

    def served(self, model_name: str, alias: str, version: int, form: str) -> None:
        """Record which version (and form) serves from now on."""
        self.model_version.labels(model_name=model_name, alias=alias).set(version)
        for known in ("onnx", "sklearn"):
            self.model_info.labels(form=known).set(1 if known == form else 0)

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)
