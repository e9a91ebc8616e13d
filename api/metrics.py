"""Prometheus metrics of the service (``GET /metrics``).

With several worker processes ``tcm serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` aggregates
them. Labels are route templates and status codes, never paths or values from a request.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

REQUESTS = Counter("tcm_http_requests_total", "HTTP requests answered", ["method", "route", "status"])
LATENCY = Histogram(
    "tcm_http_request_seconds",
    "Time from request to response start",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
CARDS = Counter("tcm_cds_cards_total", "CDS Hooks cards returned", ["service", "indicator"])
FEEDBACK = Counter("tcm_cds_feedback_total", "CDS Hooks feedback entries stored", ["service", "outcome"])
AUDIT_SECONDS = Histogram(
    "tcm_audit_write_seconds",
    "Time to commit one audit record (queue wait included)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0),
)
AUDIT_FAILURES = Counter("tcm_audit_failures_total", "Audit records that could not be written (the call got 503)")


def exposition() -> tuple[bytes, str]:
    """The metrics text: this process's, or all workers' when running multi-process."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
