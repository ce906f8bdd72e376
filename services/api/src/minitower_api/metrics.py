"""Prometheus metrics for ``/metrics``.

Counters of HTTP requests and of runs created, leased and finished record what this
process did (``rate()`` copes with its restarts). Figures that other processes also
change (runs by status, queue depth and age, runners online, the reaper's passes and
totals) are read from the database at scrape time, so they stay true however many API
and reaper processes share the file.

Runs are labelled ``app="<team_slug>/<app_slug>"``: the slugs are the teams' own names,
so an operator who does not want them readable by anyone reaching the port sets
MINITOWER_METRICS_TOKEN (README, "Metrics").
"""

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from minitower_shared.clock import utcnow
from minitower_shared.states import RunStatus
from minitower_shared.store import apps as app_store
from minitower_shared.store import reaper_passes as pass_store
from minitower_shared.store import runners as runner_store
from minitower_shared.store import runs as run_store
from minitower_shared.store import scheduler_passes as scheduler_pass_store
from minitower_shared.store import schedules as schedule_store
from minitower_shared.store import teams as team_store
from minitower_shared.store import webhooks as webhook_store

log = logging.getLogger("minitower.api")

ReadSession = Callable[[], AbstractContextManager[Session]]

# The reaper's totals (reaper_pass, summed over reapers) exposed as counters: the name
# without ``_total``, the ReaperSummary field, the help text.
_REAPER_COUNTERS = (
    ("minitower_reaper_passes", "passes", "Reaper passes made"),
    ("minitower_leases_expired", "leases_expired", "Leases the reaper expired"),
    ("minitower_runs_retried", "runs_retried", "Runs put back in the queue after a lost lease"),
    ("minitower_runs_buried", "runs_buried", "Runs marked dead after their last retry's lease"),
    (
        "minitower_runs_cancelled_by_reaper",
        "runs_cancelled",
        "Cancelling runs whose lease expired, marked cancelled",
    ),
    (
        "minitower_runners_marked_offline",
        "runners_marked_offline",
        "Runners the reaper marked offline",
    ),
)


class _DatabaseCollector(Collector):
    def __init__(self, read: ReadSession) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        with self._read() as session:
            by_status = run_store.count_runs_by_status(session)
            queues = run_store.queue_by_environment(session)
            online = runner_store.online_by_environment(session)
            environments = team_store.environment_names(session)
            reaper = pass_store.summary(session)
            scheduler = scheduler_pass_store.summary(session)
            oldest_due = schedule_store.oldest_due_at(session)
            outbox = webhook_store.outbox_summary(session)
        now = utcnow()
        runs = GaugeMetricFamily("minitower_runs", "Runs by current status", labels=["status"])
        for status in RunStatus:
            runs.add_metric([status.value], by_status.get(status.value, 0))
        yield runs

        # Every environment known from runs or runners gets a sample, 0 when idle, so a
        # graph shows an empty queue as 0 and an environment without runners as 0 online.
        known = sorted(environments | set(queues) | set(online))
        depth = GaugeMetricFamily(
            "minitower_queue_depth", "Queued runs per environment", labels=["environment"]
        )
        oldest = GaugeMetricFamily(
            "minitower_queue_oldest_age_seconds",
            "Seconds the oldest queued run of the environment has waited (0 when none)",
            labels=["environment"],
        )
        runners = GaugeMetricFamily(
            "minitower_runners_online",
            "Runners heard from recently, per environment",
            labels=["environment"],
        )
        for environment in known:
            queue = queues.get(environment)
            depth.add_metric([environment], queue.depth if queue else 0)
            age = (now - queue.oldest_queued_at).total_seconds() if queue else 0.0
            oldest.add_metric([environment], max(age, 0.0))
            runners.add_metric([environment], online.get(environment, 0))
        yield depth
        yield oldest
        yield runners

        # No sample before the first pass: an age would have to be invented, and the
        # "reaper absent" alert looks for the missing series instead.
        last_age = GaugeMetricFamily(
            "minitower_reaper_last_pass_age_seconds",
            "Seconds since the most recent pass of any reaper",
        )
        duration = GaugeMetricFamily(
            "minitower_reaper_last_pass_duration_seconds",
            "How long the most recent reaper pass took",
        )
        if reaper.last_pass_at is not None:
            last_age.add_metric([], max((now - reaper.last_pass_at).total_seconds(), 0.0))
            duration.add_metric([], (reaper.last_pass_duration_ms or 0.0) / 1000)
        yield last_age
        yield duration
        for name, field, documentation in _REAPER_COUNTERS:
            yield CounterMetricFamily(name, documentation, value=getattr(reaper, field))

        tick_age = GaugeMetricFamily(
            "minitower_scheduler_last_tick_age_seconds",
            "Seconds since the most recent tick of any scheduler",
        )
        if scheduler.last_tick_at is not None:
            tick_age.add_metric([], max((now - scheduler.last_tick_at).total_seconds(), 0.0))
        yield tick_age
        lag = GaugeMetricFamily(
            "minitower_schedule_lag_seconds",
            "Seconds since the oldest due time not yet fired (0 when none is due)",
        )
        lag.add_metric(
            [], 0.0 if oldest_due is None else max((now - oldest_due).total_seconds(), 0.0)
        )
        yield lag
        yield CounterMetricFamily(
            "minitower_schedule_runs_fired",
            "Runs the schedulers created",
            value=scheduler.runs_fired,
        )
        yield CounterMetricFamily(
            "minitower_schedule_fires_skipped",
            "Due times the schedulers skipped (overlap, disabled app, no version)",
            value=scheduler.fires_skipped,
        )

        deliveries = GaugeMetricFamily(
            "minitower_webhook_deliveries",
            "Webhook deliveries (one event to one webhook) by status",
            labels=["status"],
        )
        for delivery_status in (
            webhook_store.PENDING,
            webhook_store.DELIVERED,
            webhook_store.FAILED,
        ):
            deliveries.add_metric([delivery_status], outbox.deliveries.get(delivery_status, 0))
        yield deliveries
        attempts = CounterMetricFamily(
            "minitower_webhook_attempts",
            "Webhook POSTs made, by outcome (a deleted webhook's attempts leave the count)",
            labels=["outcome"],
        )
        attempts.add_metric(["success"], outbox.attempts.get(True, 0))
        attempts.add_metric(["failure"], outbox.attempts.get(False, 0))
        yield attempts
        outbox_age = GaugeMetricFamily(
            "minitower_webhook_outbox_oldest_pending_age_seconds",
            "Seconds the oldest undelivered webhook delivery has waited (0 when none)",
        )
        pending_since = outbox.oldest_pending_at
        outbox_age.add_metric(
            [], 0.0 if pending_since is None else max((now - pending_since).total_seconds(), 0.0)
        )
        yield outbox_age


class Metrics:
    def __init__(self, read: ReadSession) -> None:
        self._read = read
        self._app_labels: dict[int, str] = {}
        self._app_labels_lock = threading.Lock()
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
        self.runs_created = Counter(
            "minitower_runs_created", "Runs created, by app", ["app"], registry=self.registry
        )
        self.runs_leased = Counter(
            "minitower_runs_leased",
            "Runs leased to a runner, by app",
            ["app"],
            registry=self.registry,
        )
        self.runs_finished = Counter(
            "minitower_runs_finished",
            "Runs finished by a runner's result, by app and final status",
            ["app", "status"],
            registry=self.registry,
        )
        # Both series exist from the start at 0, so the first refusal is an increase an
        # alert can see (a labelled child that appears at 1 has none).
        self.storage_full = Counter(
            "minitower_storage_full",
            "Writes refused with 507 because a volume is full, by volume",
            ["volume"],
            registry=self.registry,
        )
        for volume in ("database", "objects"):
            self.storage_full.labels(volume)
        build = Info("minitower_build", "The running minitowerd", registry=self.registry)
        build.info({"version": _version()})
        self.registry.register(_DatabaseCollector(read))

    def app_label(self, app_id: int) -> str:
        """``team_slug/app_slug``, read once per app per process (slugs never change)."""
        with self._app_labels_lock:
            known = self._app_labels.get(app_id)
        if known is not None:
            return known
        try:
            with self._read() as session:
                label = app_store.app_label(session, app_id) or f"app-{app_id}"
        except SQLAlchemyError:
            # Called after the request's own transaction committed (a lease granted, a
            # result stored): a busy database must not turn that into an error answer.
            log.warning("metrics: app label not read", extra={"app_id": app_id})
            return f"app-{app_id}"
        with self._app_labels_lock:
            self._app_labels[app_id] = label
        return label


def _version() -> str:
    try:
        return version("minitower-api")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


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
