"""The runner's main loop: register, long-poll for a lease, run the attempt, repeat.

The loop runs on the main thread, where the drain's signal handler can interrupt its idle
waits (which thread starts workloads does not matter: see ``launcher.py``). A SIGTERM or
SIGINT begins a drain: no new leases; the current run may finish within
MINITOWER_DRAIN_TIMEOUT, after which it is stopped and not reported, so the reaper
retries it once its lease expires.
"""

import logging
import threading
import time

from tenacity import Retrying, retry_if_exception_type, wait_exponential_jitter

from minitower_runner.artifacts import ArtifactCache
from minitower_runner.attempt import Attempt, Finished
from minitower_runner.client import ApiClient, LeaseClock, Refused, Unavailable, failure_ids
from minitower_runner.credentials import Credentials
from minitower_runner.settings import RunnerSettings
from minitower_runner.workload import Executor
from minitower_shared.schemas import LeaseGranted

log = logging.getLogger("minitower.runner")


class DrainRequested(BaseException):
    """Raised by the signal handler into an idle wait (a long poll, a backoff sleep)."""


class Runner:
    def __init__(
        self,
        settings: RunnerSettings,
        client: ApiClient,
        credentials: Credentials,
        executor: Executor,
    ) -> None:
        self.settings = settings
        self._client = client
        self._credentials = credentials
        self._executor = executor
        self._work_root = settings.data_dir / "work"
        self._artifacts = ArtifactCache(
            settings.artifacts_dir, settings.artifact_cache_mb * 1024 * 1024
        )
        self._drain_started: float | None = None
        # True only while the main thread merely waits for work (a long poll in flight,
        # a backoff sleep): then a drain may interrupt it.
        self._idle = False
        self.last_finished: Finished | None = None
        client.on_answer = self._answered

    # --- drain -----------------------------------------------------------------------

    def request_drain(self) -> None:
        """Called from a signal handler on the main thread: sets a flag and, when the
        loop is only waiting for work, interrupts that wait."""
        if self._drain_started is None:
            self._drain_started = time.monotonic()
        if self._idle:
            self._idle = False
            raise DrainRequested

    def draining_since(self) -> float | None:
        return self._drain_started

    def _answered(self) -> None:
        """An answer's headers arrived: from here on a lease may be in hand, which a drain
        must not throw away (the run would sit leased until its lease expired)."""
        if threading.current_thread() is threading.main_thread():
            self._idle = False

    def _idle_sleep(self, seconds: float) -> None:
        self._idle = True
        try:
            if self._drain_started is not None:
                raise DrainRequested
            time.sleep(seconds)
        finally:
            self._idle = False

    # --- loop ------------------------------------------------------------------------

    def _retrying(self, what: str, *transient: type[Exception]) -> Retrying:
        def before_sleep(state: object) -> None:
            outcome = getattr(state, "outcome", None)
            exc = outcome.exception() if outcome is not None else None
            log.warning(
                "api call failed; retrying",
                extra={"call": what, "error": str(exc), **failure_ids(exc)},
            )

        return Retrying(
            retry=retry_if_exception_type((Unavailable, *transient)),
            wait=wait_exponential_jitter(multiplier=0.5, max=10.0),
            before_sleep=before_sleep,
            sleep=self._idle_sleep,
            reraise=True,
        )

    def _lease(self) -> tuple[LeaseGranted, LeaseClock] | None:
        asked_at = time.monotonic()
        self._idle = True
        try:
            if self._drain_started is not None:  # a signal that came just before
                raise DrainRequested
            got = self._client.lease(self.settings.lease_wait)
        finally:
            self._idle = False
        if got is None:
            # A server that answered before the long poll ran out (no long poll, or a
            # restart) would otherwise be asked again at once, in a busy loop.
            pause = self.settings.poll_interval - (time.monotonic() - asked_at)
            if pause > 0:
                self._idle_sleep(pause)
        return got

    def serve(self, *, once: bool = False) -> None:
        """Run until drained (or after one attempt with ``once``)."""
        self._work_root.mkdir(parents=True, exist_ok=True)
        try:
            self._retrying("registration")(self._credentials.ensure)
            self._executor.bind(shared=self._credentials.team_id is None)
            self._executor.remove_leftovers()
            while self._drain_started is None:
                # 409 while a lease of this runner's previous life is still live.
                got = self._retrying("lease", Refused)(self._lease)
                if got is None:
                    continue
                grant, clock = got
                log.info(
                    "leased",
                    extra={
                        "run_id": grant.run_id,
                        "attempt_no": grant.attempt_no,
                        "app": grant.app_slug,
                    },
                )
                attempt = Attempt(
                    grant,
                    clock,
                    client=self._client,
                    executor=self._executor,
                    settings=self.settings,
                    work_root=self._work_root,
                    artifacts=self._artifacts,
                    drain_started=self.draining_since,
                )
                self.last_finished = attempt.run()
                if once:
                    return
        except DrainRequested:
            pass
        finally:
            self._idle = False
        log.info("drained: no run in hand, exiting")
