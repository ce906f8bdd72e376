"""``minitower audit``: the team's audit log as a table or JSON, against a live API."""

from __future__ import annotations

import pytest

from tests.support.cli import CliStack
from tests.support.clients import check

pytestmark = pytest.mark.slow


def test_audit_lists_filters_and_limits(cli_stack: CliStack) -> None:
    team, cli = cli_stack.team, cli_stack.cli
    for slug in ("audit-a", "audit-b"):
        check(team.post("/api/v1/apps", json={"slug": slug}), 201)
    check(team.patch("/api/v1/apps/audit-b", json={"disabled": True}), 200)

    table = cli.ok("audit", "--action", "app.")
    header = table.out.splitlines()[0].split()
    assert header[:4] == ["ID", "AT", "ACTION", "OBJECT"]
    assert "app.disable" in table.out and "app:audit-b" in table.out
    assert "token: bootstrap" in table.out

    events = cli.ok("audit", "--object", "app:audit-b", "--json").json()
    assert [e["action"] for e in events] == ["app.disable", "app.create"]
    assert {e["actor_kind"] for e in events} == {"token"}
    (latest,) = cli.ok("audit", "--limit", "1", "--json").json()
    assert latest["action"] == "app.disable"
    assert cli.ok("audit", "--object", "schedule", "--json").json() == []

    member = check(team.post("/api/v1/tokens", json={"role": "member"}), 201)["token"]
    refused = cli("audit", env={"MINITOWER_API_TOKEN": member})
    assert refused.code == 3 and "admin" in refused.err, str(refused)
    bad = cli("audit", "--object", ":7")
    assert bad.code == 4 and "--object" in bad.err, str(bad)
    assert "Traceback" not in refused.err + bad.err
