"""Retry policies: which endings of an attempt are retried, and how long a retry waits.

A policy is resolved once, when its run is created (the version's Towerfile
``[app.retry]``, then the schedule's overrides, then the request's), and copied onto the
run, so a later version or a changed schedule never alters a run already queued.

The wait before retry ``n`` (1 for the first) is ``retry_delay * retry_backoff ** (n - 1)``
capped at ``retry_max_delay``, less a random jitter of up to :data:`JITTER` of it, so
runs that failed together do not all come back at the same instant. It never exceeds the
cap and is never below ``(1 - JITTER)`` times the un-jittered wait.
"""

import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

RetryReason = Literal["lost", "failed", "timeout"]
RETRY_REASONS: tuple[str, ...] = get_args(RetryReason)
JITTER = 0.2
# Bounds of every source (API, Towerfile): a week is longer than any sensible backoff,
# and keeps ``now + delay`` far from datetime's range.
MAX_RETRIES = 100
MAX_DELAY_SECONDS = 7 * 24 * 3600.0
MAX_BACKOFF = 10.0
# The runner reports a run that exceeded its timeout as failed with this prefix.
TIMEOUT_MESSAGE_PREFIX = "timeout:"


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 0
    retry_on: tuple[str, ...] = ("lost",)
    retry_delay: float = 0.0
    retry_backoff: float = 2.0
    retry_max_delay: float = 3600.0

    def with_overrides(self, overrides: Mapping[str, Any]) -> "RetryPolicy":
        """This policy with every key of ``overrides`` that is not None replacing its own."""
        given = {k: v for k, v in overrides.items() if v is not None}
        if "retry_on" in given:
            given["retry_on"] = tuple(given["retry_on"])
        return replace(self, **given)

    def as_dict(self) -> dict[str, Any]:
        return {
            "max_retries": self.max_retries,
            "retry_on": list(self.retry_on),
            "retry_delay": self.retry_delay,
            "retry_backoff": self.retry_backoff,
            "retry_max_delay": self.retry_max_delay,
        }


POLICY_KEYS = tuple(RetryPolicy().as_dict())


def nominal_delay(
    *, retry_delay: float, retry_backoff: float, retry_max_delay: float, retry_no: int
) -> float:
    """The wait before retry ``retry_no`` (1-based), before jitter."""
    # Bounded exponent: a backoff of 10 over 100 retries is 1e99, a finite float.
    return min(retry_delay * retry_backoff ** max(retry_no - 1, 0), retry_max_delay)


def jittered(delay: float, rand: float | None = None) -> float:
    """``delay`` less up to JITTER of it; ``rand`` in [0, 1) for tests."""
    return delay * (1.0 - JITTER * (random.random() if rand is None else rand))


def reason_of_failure(error_message: str | None) -> RetryReason:
    """A failed attempt is a ``timeout`` when the runner said so, else ``failed``."""
    if error_message is not None and error_message.startswith(TIMEOUT_MESSAGE_PREFIX):
        return "timeout"
    return "failed"
