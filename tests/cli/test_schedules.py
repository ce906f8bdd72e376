"""``minitower schedules`` and the Towerfile's ``[app] schedule`` through ``deploy``,
against a live API."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import Cli, write_app

pytestmark = pytest.mark.slow


def test_deploy_keeps_the_towerfile_schedule_in_step(cli: Cli, tmp_path: Path) -> None:
    folder = write_app(
        tmp_path / "nightly",
        "nightly",
        {"main.py": "print('hi')\n"},
        extra='schedule = "0 3 * * *"\ntimezone = "Europe/Berlin"\n',
    )
    first = cli.ok("deploy", str(folder))
    assert "created the Towerfile schedule: 0 3 * * * (Europe/Berlin)" in first.err
    (listed,) = cli.ok("schedules", "list", "nightly", "--json").json()
    assert (listed["name"], listed["cron"], listed["timezone"]) == (
        "towerfile",
        "0 3 * * *",
        "Europe/Berlin",
    )
    # The same Towerfile again changes nothing; a new cron updates the same schedule.
    assert "schedule" not in cli.ok("deploy", str(folder)).err
    text = (folder / "Towerfile").read_text().replace("0 3 * * *", "@hourly")
    (folder / "Towerfile").write_text(text)
    assert "updated the Towerfile schedule: @hourly" in cli.ok("deploy", str(folder)).err
    (updated,) = cli.ok("schedules", "list", "nightly", "--json").json()
    assert updated["schedule_id"] == listed["schedule_id"] and updated["cron"] == "@hourly"
    # Without a schedule in the Towerfile, the Towerfile's schedule goes.
    write_app(folder, "nightly", {"main.py": "print('hi')\n"})
    assert "removed the Towerfile schedule" in cli.ok("deploy", str(folder)).err
    assert cli.ok("schedules", "list", "nightly", "--json").json() == []


def test_schedules_commands(cli: Cli, tmp_path: Path) -> None:
    cli.ok("deploy", str(write_app(tmp_path / "sched", "sched", {"main.py": ""})))
    created = cli.ok(
        "schedules",
        "create",
        "sched",
        "--cron",
        "*/5 * * * *",
        "--timezone",
        "America/New_York",
        "--overlap",
        "skip",
        "--name",
        "five",
        "--json",
    ).json()
    sid = str(created["schedule_id"])
    assert created["overlap"] == "skip" and created["enabled"] is True
    assert cli.ok("schedules", "show", "sched", sid, "--json").json() == created
    assert cli.ok("schedules", "pause", "sched", sid, "--json").json()["enabled"] is False
    assert cli.ok("schedules", "resume", "sched", sid, "--json").json()["enabled"] is True
    table = cli.ok("schedules", "list", "sched").out
    assert "*/5 * * * *" in table and "America/New_York" in table and "five" in table
    cli.ok("schedules", "delete", "sched", sid)
    assert cli.ok("schedules", "list", "sched", "--json").json() == []


def test_schedules_errors_are_one_line(cli: Cli, tmp_path: Path) -> None:
    cli.ok("deploy", str(write_app(tmp_path / "errs", "errs", {"main.py": ""})))
    bad_overlap = cli("schedules", "create", "errs", "--cron", "@daily", "--overlap", "maybe")
    assert bad_overlap.code == 4, str(bad_overlap)
    assert bad_overlap.err.startswith("minitower: error: overlap:"), bad_overlap.err
    bad_cron = cli("schedules", "create", "errs", "--cron", "61 * * * *")
    assert bad_cron.code == 3, str(bad_cron)
    assert "invalid cron expression" in bad_cron.err and "Traceback" not in bad_cron.err
    missing = cli("schedules", "show", "errs", "999")
    assert missing.code == 3 and "not found" in missing.err, str(missing)
