"""``minitowerd team-shared-runners SLUG --allow|--deny``: the operator's switch for
whether a team's runs may go to shared runners (registered with the operator's token)
or only to runners bound to the team."""

from pathlib import Path

from minitower_api.maintenance import MaintenanceError, open_engine
from minitower_shared.db import read_session, write_session
from minitower_shared.store import audit
from minitower_shared.store import runner_registration as registration_store
from minitower_shared.store import teams as team_store
from minitower_shared.store.audit import AuditObject
from minitower_shared.store.runner_registration import SharedRunnersVerdict


def set_shared_runners(database: str | Path, slug: str, allow: bool, *, busy_timeout: float) -> str:
    """Set the flag; returns the line to print."""
    engine = open_engine(database, busy_timeout=busy_timeout)
    try:
        with write_session(engine) as session:
            outcome = registration_store.set_allow_shared_runners(session, slug, allow)
            if outcome.verdict == SharedRunnersVerdict.CHANGED:
                assert outcome.team is not None and outcome.team.id is not None
                audit.record(
                    session,
                    audit.OPERATOR_ACTOR,
                    "team.shared_runners",
                    AuditObject("team", outcome.team.id),
                    {"slug": slug, "allow": allow},
                    team_id=outcome.team.id,
                )
    finally:
        engine.dispose()
    if outcome.verdict == SharedRunnersVerdict.NO_SUCH_TEAM:
        raise MaintenanceError(f"no team {slug!r}")
    state = "allowed" if allow else "denied"
    if outcome.verdict == SharedRunnersVerdict.UNCHANGED:
        return f"team {slug}: shared runners already {state}"
    return f"team {slug}: shared runners {state}"


def show_shared_runners(database: str | Path, slug: str, *, busy_timeout: float) -> str:
    engine = open_engine(database, busy_timeout=busy_timeout)
    try:
        with read_session(engine) as session:
            team = team_store.get_team_by_slug(session, slug)
    finally:
        engine.dispose()
    if team is None:
        raise MaintenanceError(f"no team {slug!r}")
    state = "allowed" if team.allow_shared_runners else "denied"
    return f"team {slug}: shared runners {state}"
