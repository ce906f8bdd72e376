"""Rate limiting of password sign-ins: failed attempts per team slug and per client
address within a sliding window (``MINITOWER_LOGIN_RATE_WINDOW``).

The failures are kept in the database (``login_failure``), so that every API process of
an installation counts the same ones: behind a proxy spreading sign-ins over N replicas,
a guesser gets the same number of tries as against one. Two sign-ins racing through
different processes may both pass the check before either failure is recorded: the
limit is a throttle, not an exact quota.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session

from minitower_shared.clock import utcnow
from minitower_shared.store import login_failures as store


@dataclass(frozen=True)
class Throttled:
    """Why a sign-in is refused before its password is even checked."""

    retry_after_seconds: int
    reason: str


class LoginAttempts:
    """The two windows of a login: by slug (a guessed team) and by address (a guesser)."""

    def __init__(
        self,
        per_slug: int,
        per_address: int,
        window: float,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.per_slug = per_slug
        self.per_address = per_address
        self.window = timedelta(seconds=window)
        self._clock = clock

    def check(self, session: Session, slug: str, address: str) -> Throttled | None:
        now = self._clock()
        waits = [
            (wait, reason)
            for wait, reason in (
                (
                    store.retry_after(
                        session, store.SLUG, slug, limit=self.per_slug, window=self.window, now=now
                    ),
                    "too many failed sign-ins for this team",
                ),
                (
                    store.retry_after(
                        session,
                        store.ADDRESS,
                        address,
                        limit=self.per_address,
                        window=self.window,
                        now=now,
                    ),
                    "too many failed sign-ins from this address",
                ),
            )
            if wait is not None
        ]
        if not waits:
            return None
        wait, reason = max(waits)
        return Throttled(retry_after_seconds=math.ceil(wait.total_seconds()), reason=reason)

    def failed(self, session: Session, slug: str, address: str) -> None:
        keys = [(store.SLUG, slug), (store.ADDRESS, address)]
        store.record_failure(session, keys, window=self.window, now=self._clock())

    def succeeded(self, session: Session, slug: str) -> None:
        """A right password forgives the team's failures (not the address's: a guesser
        who owns one team must not reset its budget against others)."""
        store.forgive(session, store.SLUG, slug)
