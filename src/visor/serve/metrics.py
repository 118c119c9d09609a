"""Prometheus metrics for one app instance (its own registry: no process-global state).

With ``--workers N`` each worker process keeps its own counters; scrape each, or run one
worker per container behind the load balancer as usual.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
#: The ``method`` label's values: any other request method (clients may send made-up ones,
#: unauthenticated) counts as ``other``, so the number of series stays bounded.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class _QueueDepth:
    """Reads the batchers' queue depths at scrape time."""

    def __init__(self, depths: Callable[[], dict[str, int]]) -> None:
        self.depths = depths

    def collect(self) -> Iterable[GaugeMetricFamily]:
        g = GaugeMetricFamily("visor_queue_depth", "Images waiting for a model batch", labels=["model"])
        for model, depth in sorted(self.depths().items()):
            g.add_metric([model], depth)
        yield g


class _Drift:
    """Reads the drift window's comparison with the profile at scrape time."""

    def __init__(self, report: Callable[[], Any]) -> None:
        self.report = report

    def collect(self) -> Iterable[GaugeMetricFamily]:
        r = self.report()
        if r is None:
            return
        psi = GaugeMetricFamily("visor_drift_psi", "Population stability index of recent classify predictions "
                                "against the drift profile, by signal", labels=["signal"])
        for signal, value in [("confidence", r.psi_confidence), ("class_mix", r.psi_class_mix),
                              *r.psi_inputs.items()]:
            psi.add_metric([signal], value)
        yield psi
        if r.embedding_shift is not None:
            yield GaugeMetricFamily("visor_drift_embedding_shift", "MMD² between recent and reference embeddings",
                                    value=r.embedding_shift)
            yield GaugeMetricFamily("visor_drift_embedding_p_value", "Permutation p-value of the embedding shift",
                                    value=r.embedding_p_value)
        yield GaugeMetricFamily("visor_drift_window_images", "Recent predictions compared with the profile",
                                value=r.n)
        yield GaugeMetricFamily("visor_drift_alert", "1 when drift is detected (see visor.monitor.drift for the "
                                "thresholds); 0 otherwise or with too few images", value=float(r.alert))


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("visor_requests", "HTTP requests by route and status", ["route", "method", "status"],
                                registry=r)
        self.latency = Histogram("visor_request_latency_seconds", "HTTP request latency", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("visor_batch_size", "Images per model batch", ["model"], buckets=BATCH_BUCKETS,
                                    registry=r)
        self.batch_latency = Histogram("visor_batch_latency_seconds", "Inference time per batch", ["model"],
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.images = Counter("visor_images", "Images processed by outcome", ["route", "outcome"], registry=r)
        self.model_info = Gauge("visor_model_info", "Loaded models (value 1)", ["role", "name", "version", "sha256"],
                                registry=r)
        self.ready = Gauge("visor_ready", "1 once the models are loaded", registry=r)
        self.review_queued = Counter("visor_review_queued", "Predictions sent to the review queue", ["model"],
                                     registry=r)

    def watch_queues(self, depths: Callable[[], dict[str, int]]) -> None:
        self.registry.register(_QueueDepth(depths))

    def watch_drift(self, report: Callable[[], Any]) -> None:
        """Export ``report()`` (a DriftReport or None) as the ``visor_drift_*`` gauges."""
        self.registry.register(_Drift(report))

    def observe_batch(self, model: str, size: int, seconds: float) -> None:
        self.batch_size.labels(model).observe(size)
        self.batch_latency.labels(model).observe(seconds)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one response. ``route`` must come from a bounded set (the app passes the matched route's
        template, ``/ui`` or ``unmatched``); ``method`` is folded to :data:`METHODS` or ``other``."""
        method = method if method in METHODS else "other"
        self.requests.labels(route, method, str(int(status))).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
