"""``minitowerd revoke-runner-tokens``: cut runners off after the registration token
changed (or leaked).

A runner token outlives the registration token that got it, so a new registration token
alone keeps every runner registered with the old one, a stranger's included, working.
Revoking replaces the tokens' hashes: each runner's next call answers 401, and a runner
that holds the current registration token registers again under its own name, which
keeps its id and so the lease of a run in flight. A runner that does not hold it
(still configured with the old one) cannot, and exits 2 once idle.
"""

from dataclasses import dataclass
from pathlib import Path

from minitower_api.maintenance import open_engine
from minitower_shared.db import write_session
from minitower_shared.store import audit
from minitower_shared.store import runners as runner_store
from minitower_shared.store.audit import AuditObject


@dataclass(frozen=True)
class Revoked:
    name: str
    environment: str
    status: str


def revoke_runner_tokens(
    database: str | Path, names: list[str] | None, *, busy_timeout: float
) -> list[Revoked]:
    """Revoke the tokens of the runners named (every runner for None)."""
    engine = open_engine(database, busy_timeout=busy_timeout)
    try:
        with write_session(engine) as session:
            runners = runner_store.revoke_runner_tokens(session, names)
            for runner in runners:
                assert runner.id is not None
                # A runner bound to a team is the team's business too: its admins see it.
                audit.record(
                    session,
                    audit.OPERATOR_ACTOR,
                    "runner.token_revoke",
                    AuditObject("runner", runner.id),
                    {"name": runner.name},
                    team_id=runner.team_id,
                )
            revoked = [Revoked(r.name, r.environment, r.status) for r in runners]
    finally:
        engine.dispose()
    return revoked


def not_revoked(names: list[str] | None, revoked: list[Revoked]) -> list[str]:
    """The names given that matched no runner with a live token."""
    return sorted(set(names or ()) - {r.name for r in revoked})


def describe(revoked: list[Revoked]) -> list[str]:
    lines = [f"revoked {r.name} ({r.environment}, {r.status})" for r in revoked]
    lines.append(
        f"revoked the tokens of {len(revoked)} runner(s); each registers again on its next call"
    )
    return lines
