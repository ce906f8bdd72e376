"""Prometheus metrics for ``/metrics``.

Counters record what this process did; figures that other processes also change (runs
by status, queue depth, runners online) are read from the database at scrape time, so
they stay true however many API and reaper processes share the file.
"""

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlmodel import Session, func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from minitower_shared.models import Runner
from minitower_shared.states import RunStatus
from minitower_shared.store import runs as run_store


class _DatabaseCollector(Collector):
    def __init__(self, read: Callable[[], AbstractContextManager[Session]]) -> None:
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._read() as session:
            by_status = run_store.count_runs_by_status(session)
            depth = run_store.queue_depth_by_environment(session)
            runners = dict(
                session.exec(select(Runner.status, func.count()).group_by(Runner.status)).all()
            )
        runs = GaugeMetricFamily("minitower_runs", "Runs by current status", labels=["status"])
        for status in RunStatus:
            runs.add_metric([status.value], by_status.get(status.value, 0))
        yield runs
        queue = GaugeMetricFamily(
            "minitower_queue_depth", "Queued runs per environment", labels=["environment"]
        )
        for environment, count in sorted(depth.items()):
            queue.add_metric([environment], count)
        yield queue
        yield GaugeMetricFamily(
            "minitower_runners_online",
            "Runners heard from recently",
            value=runners.get("online", 0),
        )


class Metrics:
    def __init__(self, read: Callable[[], AbstractContextManager[Session]]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "minitower_http_requests",
            "HTTP requests by route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "minitower_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 35),
            registry=self.registry,
        )
        # No app label: /metrics is unauthenticated, and slugs are the teams' own names.
        self.runs_created = Counter(
            "minitower_runs_created", "Runs created", registry=self.registry
        )
        self.runs_leased = Counter("minitower_runs_leased", "Runs leased", registry=self.registry)
        self.runs_finished = Counter(
            "minitower_runs_finished",
            "Runs finished by a runner's result, by final status",
            ["status"],
            registry=self.registry,
        )
        self.registry.register(_DatabaseCollector(read))


class MetricsMiddleware:
    """Times every HTTP request under its route template (``/api/v1/runs/{run_id}``), so
    label cardinality stays bounded whatever ids clients use."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path_format", None) or "unmatched"
            method = scope.get("method", "GET")
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - started)
