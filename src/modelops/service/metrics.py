"""Prometheus metrics of the REST service (prometheus-client), one registry per app."""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

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


class ServiceMetrics:
    """Every metric the service exports, in its own :class:`CollectorRegistry`.

    Label values are bounded: endpoints are the routes (or ``other``), rules come
    from the contract or a fixed set, columns are contract columns (or empty).
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.requests = Counter(
            "modelops_requests",
            "HTTP requests answered, by endpoint and status.",
            ["endpoint", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "modelops_request_duration_seconds",
            "Time from the request's headers to its answer, by endpoint and status.",
            ["endpoint", "status"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.rows = Counter(
            "modelops_rows_scored",
            "Rows scored by POST /invocations.",
            registry=registry,
        )
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
        self._children: dict[tuple[str, str], tuple[Any, Any]] = {}
        for reason in ("queue_full", "write_failed"):
            self.log_rows_dropped.labels(reason=reason)
        for reason in ("integrity", "load", "warm_up", "no_alias"):
            self.load_failures.labels(reason=reason)

    def observe(self, endpoint: str, status: str, seconds: float) -> None:
        """Count one answered request and its latency."""
        children = self._children.get((endpoint, status))
        if children is None:
            children = self._children[(endpoint, status)] = (
                self.requests.labels(endpoint=endpoint, status=status),
                self.latency.labels(endpoint=endpoint, status=status),
            )
        children[0].inc()
        children[1].observe(seconds)

    def served(self, model_name: str, alias: str, version: int, form: str) -> None:
        """Record which version (and form) serves from now on."""
        self.model_version.labels(model_name=model_name, alias=alias).set(version)
        for known in ("onnx", "sklearn"):
            self.model_info.labels(form=known).set(1 if known == form else 0)

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)
