"""One leased attempt, from the lease to the result.

start → download and verify the artifact → extract it into a fresh workspace → prepare
the environment → run the entrypoint → flush the logs → report. A heartbeat thread keeps
the lease alive from the moment of the lease and notices a cancel. The attempt is fenced
the moment its lease is gone: a 410 on any call, or the API unreachable until the lease
has certainly expired. Then the work is killed and nothing is reported, because someone
else may hold the run by now.
"""

import logging
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tenacity import RetryError, Retrying, retry_if_exception_type, wait_exponential_jitter

from minitower_runner.artifacts import ArtifactCache
from minitower_runner.client import (
    ApiCallFailed,
    ApiClient,
    LeaseClock,
    LeaseGone,
    Unavailable,
    failure_ids,
)
from minitower_runner.isolation import remove_workspace
from minitower_runner.logs import LogShipper
from minitower_runner.settings import RunnerSettings
from minitower_runner.venvs import EnvironmentBuildError
from minitower_runner.workload import (
    Executor,
    RunSpec,
    UnsupportedEntrypoint,
    Workload,
)
from minitower_shared.archives import UnsafeArchiveError, extract_archive
from minitower_shared.log_context import bound_ids, carry_context
from minitower_shared.schemas import LeaseGranted, RunSecrets
from minitower_shared.states import AttemptStatus

log = logging.getLogger("minitower.runner")

_T = TypeVar("_T")

# Why the runner stopped a workload that had not finished by itself.
CANCEL, TIMEOUT, FENCED, DRAIN = "cancel", "timeout", "fenced", "drain"


class PrepareError(Exception):
    """The run cannot be executed (bad artifact, environment build failure): report it."""


class Fenced(Exception):
    """The lease went while the run was being prepared: report nothing."""


@dataclass(frozen=True)
class Finished:
    """What the runner reported for the attempt, or None for each when it reported nothing."""

    status: AttemptStatus | None
    exit_code: int | None = None
    error_message: str | None = None


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class Phases:
    """How long each step of the attempt took, for the log line that ends it."""

    def __init__(self) -> None:
        self._last = time.monotonic()
        self.seconds: dict[str, float] = {}

    def mark(self, name: str) -> None:
        now = time.monotonic()
        self.seconds[name] = now - self._last
        self._last = now

    def milliseconds(self) -> dict[str, float]:
        return {name: round(value * 1000, 1) for name, value in self.seconds.items()}


class Attempt:
    def __init__(
        self,
        grant: LeaseGranted,
        clock: LeaseClock,
        *,
        client: ApiClient,
        executor: Executor,
        settings: RunnerSettings,
        work_root: Path,
        artifacts: ArtifactCache,
        drain_started: Callable[[], float | None],
    ) -> None:
        self.grant = grant
        self._client = client
        self._executor = executor
        self._settings = settings
        self._work_root = work_root
        self._artifacts = artifacts
        self._drain_started = drain_started
        self._clock = clock
        # The lease's length as the runner sees it, for pacing heartbeats.
        self._ttl = max(clock.remaining(), 0.3)
        self._wake = threading.Event()
        self._fenced = threading.Event()
        self._done = threading.Event()
        self._cancel_requested = False
        self._shipper: LogShipper | None = None
        self._workload: Workload | None = None
        self._workload_finished = False
        self._phases = Phases()

    # --- shared state ------------------------------------------------------------------

    def _fence(self, why: str) -> None:
        if not self._fenced.is_set():
            log.warning("lease lost: stopping the work, reporting nothing", extra={"why": why})
            self._fenced.set()
            self._wake.set()
            # Nobody takes these lines any more, and a writer blocked on a full buffer
            # must not hold the work up.
            if self._shipper is not None:
                self._shipper.abandon()

    def _lease_expired(self) -> bool:
        """True (and fenced) once the lease has certainly expired with no heartbeat
        answered: someone else may hold the run by now."""
        if not self._fenced.is_set() and self._clock.remaining() <= 0:
            self._fence("the lease expired before a heartbeat got through")
        return self._fenced.is_set()

    def _note_cancel(self) -> None:
        if not self._cancel_requested:
            self._cancel_requested = True
            self._wake.set()

    def _emit(self, message: str) -> None:
        """A line of the runner's own into the run's log (stderr), marked as such."""
        if self._shipper is not None:
            self._shipper.add("stderr", f"[minitower] {message}", block=False)

    # --- calls that must get through while the lease lives -----------------------------

    def _persist(self, call: Callable[[], _T]) -> _T | None:
        """``call`` retried with backoff while the API is unreachable; None once the lease
        is gone or has certainly expired."""

        def hopeless(_state: object) -> bool:
            return self._lease_expired()

        if hopeless(None):
            return None
        retrying = Retrying(
            retry=retry_if_exception_type(Unavailable),
            wait=wait_exponential_jitter(multiplier=0.1, max=5.0),
            stop=hopeless,
            sleep=self._pause,
            reraise=False,
        )
        try:
            return retrying(call)
        except LeaseGone:
            self._fence("410 from the API")
        except RetryError:
            self._fence("the API stayed unreachable until the lease expired")
        return None

    def _pause(self, seconds: float) -> None:
        """A retry's backoff, cut short when the attempt is fenced."""
        self._fenced.wait(seconds)

    def _heartbeats(self) -> None:
        interval = min(self._settings.heartbeat_interval, self._ttl / 3)
        next_in = interval
        grant = self.grant
        while not self._done.wait(next_in):
            next_in = interval
            # A call that hangs must not outlast the lease it is trying to keep.
            timeout = max(min(self._settings.request_timeout, self._clock.remaining()), 0.2)
            try:
                beat, self._clock = self._client.heartbeat(
                    grant.run_id, grant.lease_token, timeout=timeout
                )
            except LeaseGone:
                self._fence("410 on heartbeat")
                return
            except Exception as exc:
                # Whatever went wrong (no answer, a refusal, a bug), only the lease's
                # expiry ends the attempt; until then, keep trying.
                if self._lease_expired():
                    return
                log.warning(
                    "heartbeat failed; retrying", extra={"error": str(exc), **failure_ids(exc)}
                )
                next_in = min(interval, 1.0, max(self._clock.remaining() / 2, 0.05))
                continue
            if beat.cancel_requested:
                self._note_cancel()

    # --- the attempt -------------------------------------------------------------------

    def run(self) -> Finished:
        # Every record of the attempt, on any of its threads, names the run and attempt.
        with bound_ids(run_id=self.grant.run_id, attempt_no=self.grant.attempt_no):
            return self._attempt()

    def _attempt(self) -> Finished:
        heartbeat = threading.Thread(
            target=carry_context(self._heartbeats), name="heartbeat", daemon=True
        )
        heartbeat.start()
        workspace: Path | None = None
        try:
            workspace = Path(
                tempfile.mkdtemp(
                    prefix=f"run-{self.grant.run_id}-{self.grant.attempt_no}-",
                    dir=self._work_root,
                )
            )
            return self._run(workspace)
        except Exception as exc:
            # A bug or an executor fault must not take the runner down, nor leave the run
            # waiting for its lease to expire when the API can still be told.
            log.exception("the runner failed to execute the run")
            if self._shipper is None or self._fenced.is_set():
                return Finished(None)
            message = f"runner error: {type(exc).__name__}: {exc}"
            self._emit(message)
            return self._report(Finished(AttemptStatus.FAILED, None, message))
        finally:
            if self._workload is not None and not self._workload_finished:
                # Only after a fault: nothing of the run may outlive the attempt.
                self._workload.kill()
                self._workload.finish(timeout=5.0)
            self._done.set()
            if self._shipper is not None:
                self._shipper.abandon()
            heartbeat.join(self._settings.request_timeout + 1)
            if workspace is not None:
                remove_workspace(workspace)

    def _run(self, workspace: Path) -> Finished:
        grant = self.grant
        cancel_requested = False
        if not grant.started:  # an API older than starting on lease
            started = self._persist(lambda: self._client.start(grant.run_id, grant.lease_token))
            if started is None:
                return Finished(None)
            start, self._clock = started
            cancel_requested = start.cancel_requested
        self._phases.mark("start")
        self._shipper = LogShipper(
            lambda batch: self._client.send_logs(grant.run_id, grant.lease_token, batch),
            batch_lines=self._settings.log_batch_lines,
            flush_interval=self._settings.log_flush_interval,
            on_gone=lambda: self._fence("410 on logs"),
        )
        if cancel_requested:
            return self._report(
                Finished(AttemptStatus.CANCELLED, None, "cancelled before it started")
            )
        secrets = self._persist(lambda: self._fetch_secrets())
        if secrets is None:
            return Finished(None)
        if secrets.missing:
            message = (
                f"the run needs secret(s) that environment {secrets.environment!r} does not "
                f"have: {', '.join(secrets.missing)} (an admin sets them with `minitower "
                f"secrets set NAME --environment {secrets.environment}`)"
            )
            self._emit(message)
            return self._report(Finished(AttemptStatus.FAILED, None, message))
        self._shipper.redact(list(secrets.secrets.values()))
        self._phases.mark("secrets")
        preparing_since = time.monotonic()
        try:
            spec = self._unpack(workspace, secrets.secrets)
            if self._stop_reason(preparing_since) is not None:
                return self._stopped_before_start(preparing_since)
            prepared = self._executor.prepare(
                spec, self._shipper.add, lambda: self._stop_reason(preparing_since) is not None
            )
            self._phases.mark("prepare")
        except Fenced:
            return Finished(None)
        except (PrepareError, EnvironmentBuildError, UnsupportedEntrypoint) as exc:
            if self._stop_reason(preparing_since) is not None:
                return self._stopped_before_start(preparing_since)
            self._emit(str(exc))
            return self._report(Finished(AttemptStatus.FAILED, None, str(exc)))
        if self._stop_reason(preparing_since) is not None:
            return self._stopped_before_start(preparing_since)
        self._workload = prepared.start(self._shipper.add, self._wake.set)
        return self._supervise(self._workload)

    def _fetch_secrets(self) -> RunSecrets:
        grant = self.grant
        if not grant.secrets:
            # Nothing declared (or an API from before secrets, whose grant has no such
            # field): no request on the hot path.
            return RunSecrets(environment="", secrets={}, missing=[])
        return self._client.fetch_secrets(grant.run_id, grant.lease_token)

    def _unpack(self, workspace: Path, secrets: dict[str, str]) -> RunSpec:
        grant = self.grant
        archive = self._artifacts.find(grant.team_id, grant.artifact_sha256)
        if archive is None:
            archive = self._download(workspace / "artifact.tar.gz")
        self._phases.mark("download")
        app_dir = workspace / "app"
        app_dir.mkdir()
        try:
            extract_archive(archive, app_dir)
        except UnsafeArchiveError as exc:
            raise PrepareError(f"artifact refused: {exc}") from exc
        if archive.parent == workspace:  # not cached; the workload has no use for it
            archive.unlink()
        self._phases.mark("extract")
        if not (app_dir / grant.entrypoint).is_file():
            raise PrepareError(f"entrypoint {grant.entrypoint!r} is not a file in the artifact")
        return RunSpec(
            run_id=grant.run_id,
            run_no=grant.run_no,
            attempt_no=grant.attempt_no,
            app_slug=grant.app_slug,
            version_no=grant.version_no,
            entrypoint=grant.entrypoint,
            input=grant.input,
            import_paths=grant.import_paths,
            app_dir=app_dir,
            team_id=grant.team_id,
            secrets=secrets,
        )

    def _download(self, dest: Path) -> Path:
        """The grant's archive, downloaded and verified; kept in the cache when it fits."""
        grant = self.grant
        got = self._persist(
            lambda: self._client.download_artifact(grant.run_id, grant.lease_token, dest)
        )
        if got is None:
            raise Fenced
        actual, announced = got
        if actual != announced or actual != grant.artifact_sha256:
            raise PrepareError(
                f"artifact SHA-256 mismatch: expected {grant.artifact_sha256}, "
                f"got {actual} (header said {announced or 'nothing'}); refusing to run it"
            )
        return self._artifacts.keep(grant.team_id, grant.artifact_sha256, dest)

    def _stopped_before_start(self, since: float) -> Finished:
        """The run was stopped while it was being prepared."""
        reason = self._stop_reason(since)
        if reason == CANCEL:
            return self._report(
                Finished(AttemptStatus.CANCELLED, None, "cancelled before it started")
            )
        if reason == TIMEOUT:
            message = (
                f"timeout: preparing the run took longer than its timeout of "
                f"{self.grant.timeout_seconds} s"
            )
            self._emit(message)
            return self._report(Finished(AttemptStatus.FAILED, None, message))
        # Fenced, or the runner is shutting down: the reaper hands the run on.
        return Finished(None)

    def _stop_reason(self, started_at: float) -> str | None:
        """Why the work must stop now, if it must. The run's timeout counts from
        ``started_at``; a drain allows MINITOWER_DRAIN_TIMEOUT from its start."""
        if self._lease_expired():
            return FENCED
        if self._cancel_requested:
            return CANCEL
        now = time.monotonic()
        if now >= started_at + self.grant.timeout_seconds:
            return TIMEOUT
        drain = self._drain_started()
        if drain is not None and now >= drain + self._settings.drain_timeout:
            return DRAIN
        return None

    def _supervise(self, workload: Workload) -> Finished:
        started_at = time.monotonic()
        reason: str | None = None
        kill_at = float("inf")
        while True:
            self._wake.clear()
            code = workload.wait(0)
            if code is not None:
                break
            now = time.monotonic()
            if reason is None:
                reason = self._stop_reason(started_at)
                if reason == FENCED:
                    workload.kill()
                elif reason is not None:
                    self._emit(
                        f"stopping the run ({reason}): SIGTERM, then SIGKILL after "
                        f"{self._settings.kill_grace_period:g}s"
                    )
                    workload.terminate()
                    kill_at = now + self._settings.kill_grace_period
            elif now >= kill_at:
                workload.kill()
                kill_at = float("inf")
            elif self._lease_expired():
                workload.kill()
            # Sleep until the workload exits, something changes, or the next deadline;
            # at most half a second, to see a drain that a signal handler began.
            deadline = kill_at if reason is not None else started_at + self.grant.timeout_seconds
            self._wake.wait(min(max(deadline - now, 0.0), 0.5))
        # Its last lines may still be on their way through a full buffer: wait for them
        # while the lease lasts.
        workload.finish(timeout=max(5.0, self._clock.remaining()))
        self._workload_finished = True
        self._phases.mark("execute")
        if self._fenced.is_set() or reason == DRAIN:
            return Finished(None)
        if reason == CANCEL:
            return self._report(Finished(AttemptStatus.CANCELLED, code, "cancelled"))
        if reason == TIMEOUT:
            message = (
                f"timeout: the run exceeded its timeout of {self.grant.timeout_seconds} s "
                f"and was stopped ({_describe_exit(code)})"
            )
            self._emit(message)
            return self._report(Finished(AttemptStatus.FAILED, code, message))
        if code == 0:
            return self._report(Finished(AttemptStatus.COMPLETED, 0, None))
        return self._report(Finished(AttemptStatus.FAILED, code, _describe_exit(code)))

    def _report(self, result: Finished) -> Finished:
        """Flush the logs, then report; retried until the server answers or the lease is
        gone. Returns what was reported, or Finished(None) when nothing was."""
        assert self._shipper is not None and result.status is not None
        grant = self.grant
        # An API that starts attempts on lease takes the last lines with the result.
        with_result = grant.started
        if not self._shipper.close(deadline=self._clock.deadline, keep_last_batch=with_result):
            if self._fenced.is_set():
                return Finished(None)
            log.warning("some log lines were not accepted before the lease ran out")
        last_lines = self._shipper.take_rest() if with_result else []
        status = result.status
        try:
            accepted = self._persist(
                lambda: self._client.report_result(
                    grant.run_id,
                    grant.lease_token,
                    status,
                    result.exit_code,
                    result.error_message,
                    last_lines,
                )
            )
        except ApiCallFailed as exc:
            log.error(
                "result refused", extra={"status": status, "error": str(exc), **failure_ids(exc)}
            )
            return Finished(None)
        if accepted is None:
            return Finished(None)
        self._phases.mark("report")
        log.info(
            "reported",
            extra={
                "status": status,
                "run_status": accepted.run_status,
                "phases_ms": self._phases.milliseconds(),
            },
        )
        return result
