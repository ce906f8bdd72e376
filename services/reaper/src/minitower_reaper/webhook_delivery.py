"""The webhook delivery loop: claim a due delivery, POST it, record the attempt.

Runs in the reaper process beside the lease pass. Claims are conditional UPDATEs with a
``claimed_until`` deadline, so two loops (two reapers) never hold the same delivery at
once, and one that dies mid-send loses its claim when the deadline passes: delivery is
at least once (a receiver dedupes by the event id), never lost.
"""

import logging
import threading
from dataclasses import dataclass
from datetime import timedelta

import httpx
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from minitower_reaper.webhook_sender import SendOptions, new_client, send
from minitower_shared.clock import utcnow
from minitower_shared.db import write_session
from minitower_shared.store import webhooks as webhook_store

log = logging.getLogger("minitower.reaper.webhooks")


@dataclass(frozen=True)
class DeliveryPolicy:
    timeout: float
    allow_private: bool
    max_age: timedelta
    backoff_base: float
    backoff_cap: float

    @property
    def hold(self) -> timedelta:
        """How long a claim lasts: longer than one send can take, with room to record it."""
        return timedelta(seconds=self.timeout + 30)


def deliver_one(engine: Engine, client: httpx.Client, policy: DeliveryPolicy) -> bool:
    """Claim, send and record one due delivery; False when none was due."""
    with write_session(engine) as session:
        claims = webhook_store.claim_due(session, utcnow(), hold=policy.hold, limit=1)
    if not claims:
        return False
    claim = claims[0]
    result = send(
        client, claim, SendOptions(timeout=policy.timeout, allow_private=policy.allow_private)
    )
    with write_session(engine) as session:
        status = webhook_store.record_attempt(
            session,
            claim,
            result,
            utcnow(),
            max_age=policy.max_age,
            backoff_base=policy.backoff_base,
            backoff_cap=policy.backoff_cap,
        )
    log.info(
        "webhook attempt",
        extra={
            "webhook_id": claim.webhook_id,
            "event_id": claim.event_id,
            "status_code": result.status_code,
            "error": result.error,
            "delivery_status": status,
        },
    )
    return True


def run_deliveries(
    engine: Engine, policy: DeliveryPolicy, *, interval: float, stop: threading.Event
) -> None:
    """Deliver until ``stop`` is set, polling every ``interval`` seconds when idle."""
    log.info("webhook delivery started", extra={"interval_seconds": interval})
    with new_client() as client:
        while not stop.is_set():
            try:
                busy = deliver_one(engine, client, policy)
            except OperationalError as exc:
                # The database was busy: an unrecorded attempt's claim lapses and the
                # delivery is sent again (the receiver dedupes by event id).
                log.warning("webhook pass failed, will retry", extra={"error": str(exc.orig)})
                busy = False
            except Exception:
                # A bug must not stop notifications for good (nor the reaper beside it):
                # logged with its traceback, and the claim lapses as above.
                log.exception("webhook pass failed unexpectedly, will retry")
                busy = False
            if not busy:
                stop.wait(interval)
    log.info("webhook delivery stopped")
