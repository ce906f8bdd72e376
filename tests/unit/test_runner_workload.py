"""The workload's environment and command, as both executors build them."""

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest

from minitower_runner.client import TRANSIT_SLACK, LeaseClock
from minitower_runner.workload import (
    RunSpec,
    UnsupportedEntrypoint,
    input_variables,
    interpreter_for,
    workload_environment,
)


def spec(**input_values: object) -> RunSpec:
    return RunSpec(
        run_id=5,
        run_no=2,
        attempt_no=1,
        app_slug="hello",
        version_no=3,
        entrypoint="main.py",
        input=dict(input_values),
        import_paths=["src"],
        app_dir=Path("/work/app"),
    )


def test_input_variables_strings_as_is_others_as_json() -> None:
    assert input_variables(
        {"name": "x y", "n": 3, "ok": True, "none": None, "obj": {"a": [1]}, "f": 1.5}
    ) == {"name": "x y", "n": "3", "ok": "true", "none": "null", "obj": '{"a": [1]}', "f": "1.5"}


def test_keys_that_cannot_be_variables_are_only_in_the_whole_input() -> None:
    assert input_variables({"a-b": 1, "1x": 2, "": 3, "nul": "a\0b", "ok_1": 4}) == {"ok_1": "4"}
    env = workload_environment(
        spec(**{"a-b": 1}), home="/h", python_path=[], path_prefix=[], base={}
    )
    assert env["MINITOWER_INPUT"] == '{"a-b": 1}'


def test_runtime_variables_win_over_input_and_secrets_stay_out() -> None:
    base = {
        "PATH": "/usr/bin",
        "LANG": "C.UTF-8",
        "HTTPS_PROXY": "http://proxy:3128",
        "MINITOWER_RUNNER_REGISTRATION_TOKEN": "secret",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "PYTHONPATH": "/runner/site",
    }
    env = workload_environment(
        spec(PATH="/evil", HOME="/evil", greeting="hi"),
        home="/work/home",
        python_path=["/work/app/src"],
        path_prefix=["/venv/bin"],
        base=base,
    )
    assert env["PATH"] == "/venv/bin:/usr/bin"
    assert env["HOME"] == "/work/home"
    assert env["PYTHONPATH"] == "/work/app/src"
    assert env["greeting"] == "hi"
    assert env["LANG"] == "C.UTF-8" and env["HTTPS_PROXY"] == "http://proxy:3128"
    assert "secret" not in env.values()
    assert env["MINITOWER_RUN_ID"] == "5" and env["MINITOWER_ATTEMPT_NO"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"


def test_no_import_paths_means_no_pythonpath() -> None:
    env = workload_environment(
        spec(PYTHONPATH="/x"), home="/h", python_path=[], path_prefix=[], base={}
    )
    assert "PYTHONPATH" not in env


@pytest.mark.parametrize(("entry", "kind"), [("main.py", "python"), ("bin/run.sh", "sh")])
def test_interpreters(entry: str, kind: str) -> None:
    assert interpreter_for(entry) == kind


def test_other_entrypoints_are_refused() -> None:
    with pytest.raises(UnsupportedEntrypoint, match=r"neither a \.py nor a \.sh"):
        interpreter_for("tool.exe")


def answer(date: datetime | None) -> httpx.Response:
    headers = {"date": format_datetime(date, usegmt=True)} if date is not None else {}
    return httpx.Response(200, headers=headers)


def test_lease_clock_uses_the_servers_date_not_the_local_clock() -> None:
    # The server's clock is an hour ahead of ours; the lease has 30 s left by its clock.
    server_now = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    expires = server_now + timedelta(seconds=30)
    clock = LeaseClock.from_answer(expires, answer(server_now), received_at=100.0)
    # Two seconds off for Date's rounding and staleness.
    assert clock.deadline == pytest.approx(100.0 + 28.0)


def test_lease_clock_prefers_the_servers_time_in_the_answer_to_its_date_header() -> None:
    # The server's clock is an hour ahead of ours and the Date header a second stale;
    # the body's server_time is exact, and only the transit slack is taken off.
    server_now = datetime.now(UTC) + timedelta(hours=1)
    expires = server_now + timedelta(seconds=2)
    stale = answer(server_now.replace(microsecond=0) - timedelta(seconds=1))
    clock = LeaseClock.from_answer(expires, stale, received_at=100.0, server_time=server_now)
    assert clock.deadline == pytest.approx(100.0 + 2.0 - TRANSIT_SLACK)


def test_lease_clock_without_a_date_header_falls_back_to_the_local_clock() -> None:
    expires = datetime.now(UTC) + timedelta(seconds=30)
    clock = LeaseClock.from_answer(expires, answer(None), received_at=100.0)
    assert clock.deadline == pytest.approx(130.0, abs=0.5)


def test_run_secrets_win_over_input_but_not_over_the_runtime() -> None:
    run = RunSpec(
        **{
            **spec(DB_URL="from-input", greeting="hi").__dict__,
            "secrets": {"DB_URL": "s3cret", "PATH": "/evil"},
        }
    )
    env = workload_environment(
        run, home="/h", python_path=[], path_prefix=["/venv/bin"], base={"PATH": "/usr/bin"}
    )
    assert env["DB_URL"] == "s3cret" and env["greeting"] == "hi"
    assert env["PATH"] == "/venv/bin:/usr/bin"
    assert "s3cret" not in repr(run)
