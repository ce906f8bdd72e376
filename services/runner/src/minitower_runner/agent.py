"""The runner's main loop: register, long-poll for a lease, run the attempt, repeat.

The loop runs on the main thread (workloads are started from it, and the kernel ties a
workload's parent-death signal to the thread that started it). A SIGTERM or SIGINT
begins a drain: no new leases; the current run may finish within
MINITOWER_DRAIN_TIMEOUT, after which it is stopped and not reported, so the reaper
retries it once its lease expires.
"""

import logging
import time

from tenacity import Retrying, retry_if_exception_type, wait_exponential_jitter

from minitower_runner.attempt import Attempt, Finished
from minitower_runner.client import ApiClient, LeaseClock, Refused, Unavailable
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
        self._drain_started: float | None = None
        self._idle = False
        self.last_finished: Finished | None = None

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

    # --- loop ------------------------------------------------------------------------

    def _retrying(self, what: str, *transient: type[Exception]) -> Retrying:
        def before_sleep(state: object) -> None:
            outcome = getattr(state, "outcome", None)
            exc = outcome.exception() if outcome is not None else None
            log.warning("%s: %s; retrying", what, exc)

        return Retrying(
            retry=retry_if_exception_type((Unavailable, *transient)),
            wait=wait_exponential_jitter(multiplier=0.5, max=10.0),
            before_sleep=before_sleep,
            reraise=True,
        )

    def _lease(self) -> tuple[LeaseGranted, LeaseClock] | None:
        asked_at = time.monotonic()
        got = self._client.lease(self.settings.lease_wait)
        if got is None:
            # A server that answered before the long poll ran out (no long poll, or a
            # restart) would otherwise be asked again at once, in a busy loop.
            pause = self.settings.poll_interval - (time.monotonic() - asked_at)
            if pause > 0:
                time.sleep(pause)
        return got

    def serve(self, *, once: bool = False) -> None:
        """Run until drained (or after one attempt with ``once``)."""
        self._work_root.mkdir(parents=True, exist_ok=True)
        try:
            self._idle = True
            self._retrying("registration")(self._credentials.ensure)
            self._executor.remove_leftovers()
            while self._drain_started is None:
                self._idle = True
                # 409 while a lease of this runner's previous life is still live.
                got = self._retrying("lease", Refused)(self._lease)
                self._idle = False
                if got is None:
                    continue
                grant, clock = got
                log.info(
                    "leased: run_id=%s attempt_no=%s app=%s",
                    grant.run_id,
                    grant.attempt_no,
                    grant.app_slug,
                )
                attempt = Attempt(
                    grant,
                    clock,
                    client=self._client,
                    executor=self._executor,
                    settings=self.settings,
                    work_root=self._work_root,
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
