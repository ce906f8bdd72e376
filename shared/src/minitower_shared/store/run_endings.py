"""The one way a run reaches a terminal status.

Every terminal transition (a runner's result, lease expiry, the reaper's burial, a
cancel) goes through :func:`end_run`, which makes the conditional UPDATE and, in the
same transaction, appends the run's webhook event to the outbox: a transition added
later cannot forget to notify.
"""

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from minitower_shared.models import Run
from minitower_shared.states import TERMINAL_RUN_STATUSES, RunStatus
from minitower_shared.store import webhooks as webhook_store


def end_run(
    session: Session,
    run_id: int,
    *,
    expected: Collection[RunStatus],
    status: RunStatus,
    now: datetime,
    **values: Any,
) -> bool:
    """``expected → status`` (terminal) for the run, with ``values`` (error_message,
    exit_code, …); False, changing nothing, when the run was not in ``expected``."""
    if status not in TERMINAL_RUN_STATUSES:
        raise ValueError(f"{status.value} is not a terminal run status")
    result = session.execute(
        update(Run)
        .where(col(Run.id) == run_id, col(Run.status).in_([s.value for s in expected]))
        .values(status=status.value, finished_at=now, updated_at=now, **values),
        execution_options={"synchronize_session": False},
    )
    if not int(result.rowcount):  # type: ignore[attr-defined]
        return False
    # populate_existing: the UPDATE went around the session, and a caller holding the
    # run must see its new status.
    run = session.exec(
        select(Run).where(Run.id == run_id).execution_options(populate_existing=True)
    ).one()
    webhook_store.append_run_event(session, run, status, now)
    return True
