"""The installed ``minitower`` against a live local stack, as a user drives it: deploy
and deploy again, runs with parameters and defaults, ``--wait`` exit codes for every
outcome, ``logs --follow`` ending with the run, ``--json`` that parses, whole ids in
tables, profiles, and clear one-line errors."""

from __future__ import annotations

import json
import shutil
import signal
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import EXAMPLES, Cli, CliStack, Result, finish, write_app
from tests.support.clients import check
from tests.support.processes import free_port
from tests.support.waiting import wait_for
from tests.support.wheels import make_wheel

pytestmark = pytest.mark.slow

TERMINAL = {"completed", "failed", "cancelled", "dead"}

EXITS = {
    "main.py": """\
        import json, os, sys, time
        params = json.loads(os.environ["MINITOWER_INPUT"])
        print("started", params["tag"], flush=True)
        time.sleep(params["sleep"])
        print("exiting with", params["code"])
        sys.exit(params["code"])
        """
}
EXITS_PARAMS = """
    [[parameters]]
    name = "code"
    type = "integer"
    default = 0

    [[parameters]]
    name = "sleep"
    type = "number"
    default = 0

    [[parameters]]
    name = "tag"
    default = "-"
    """


def one_line_error(result: Result, code: int, fragment: str) -> None:
    """Exit ``code``; stderr is one ``minitower: error:`` line containing ``fragment``."""
    assert result.code == code, str(result)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, str(result)
    assert lines[0].startswith("minitower: error: "), str(result)
    assert fragment in lines[0], str(result)
    assert "Traceback" not in result.err


@pytest.fixture(scope="module")
def hello(cli_stack: CliStack) -> list[Result]:
    """The hello example, deployed twice."""
    return [cli_stack.cli("deploy", str(EXAMPLES / "hello")) for _ in range(2)]


@pytest.fixture(scope="module")
def exits(cli_stack: CliStack) -> str:
    folder = write_app(cli_stack.workdir / "apps" / "exits", "exits", EXITS, EXITS_PARAMS)
    cli_stack.cli.ok("deploy", str(folder))
    return "exits"


def run_with_tag(stack: CliStack, tag: str, status: str = "running") -> dict[str, Any]:
    """The run of ``exits`` started with ``-p tag=<tag>``, once it reaches ``status``."""

    def find() -> dict[str, Any] | None:
        body = check(stack.team.get("/api/v1/runs", params={"app": "exits", "limit": 200}), 200)
        return next(
            (r for r in body["runs"] if r["input"].get("tag") == tag and r["status"] == status),
            None,
        )

    run: dict[str, Any] = wait_for(find, timeout=60, what=f"the {tag!r} run to be {status}")
    return run


# --- deploy ----------------------------------------------------------------------------


def test_deploy_creates_the_app_then_adds_versions(cli: Cli, hello: list[Result]) -> None:
    first, second = hello
    assert first.code == 0, str(first)
    assert "created app hello" in first.err
    assert first.out.startswith("deployed hello version 1\n")
    assert 'parameters  name (string, default "world"), count (integer, default 1)' in first.out
    assert second.code == 0, str(second)
    assert "created app" not in second.err
    assert second.out.startswith("deployed hello version 2 (same content as version 1)")

    versions = cli.ok("versions", "list", "hello", "--json").json()
    assert [v["version_no"] for v in versions] == [2, 1]
    dry = cli.ok("deploy", str(EXAMPLES / "hello"), "--dry-run", "--json").json()
    assert dry["files"] == ["Towerfile", "main.py"]
    # Deterministic packaging: the server's hash of both uploads is the local one.
    assert {v["artifact_sha256"] for v in versions} == {dry["sha256"]}
    assert versions[0]["params_schema"]["properties"]["count"] == {
        "type": "integer",
        "description": "How many greetings",
        "default": 1,
    }


def test_deploy_json_and_a_changed_app(cli: Cli, cli_stack: CliStack, tmp_path: Path) -> None:
    folder = tmp_path / "hello-copy"
    shutil.copytree(EXAMPLES / "hello", folder)
    text = (folder / "Towerfile").read_text().replace('name = "hello"', 'name = "hello-copy"')
    (folder / "Towerfile").write_text(text)
    first = cli.ok("deploy", str(folder), "--json").json()
    (folder / "main.py").write_text((folder / "main.py").read_text() + "# changed\n")
    second = cli.ok("deploy", str(folder), "--json").json()
    assert (first["version_no"], second["version_no"]) == (1, 2)
    assert first["artifact_sha256"] != second["artifact_sha256"]
    assert second["entrypoint"] == "main.py"
    assert second["timeout_seconds"] == 60


def test_deploy_refuses_a_bad_towerfile(cli: Cli, tmp_path: Path) -> None:
    folder = write_app(tmp_path / "bad", "Bad Name", {"main.py": ""})
    one_line_error(cli("deploy", str(folder)), 4, "[app].name 'Bad Name' cannot be an app's name")
    one_line_error(cli("deploy", str(tmp_path / "missing")), 4, "no such folder")


# --- run --------------------------------------------------------------------------------


def test_run_with_defaults_and_parameters(cli: Cli, hello: list[Result]) -> None:
    plain = cli("run", "hello", "--wait")
    assert plain.code == 0, str(plain)
    assert plain.out == "hello, world! (1/1)\n"
    assert "done" in plain.err  # the app's stderr, on stderr
    assert "completed" in plain.err

    given = cli("run", "hello", "-p", "name=MiniTower", "-p", "count=3", "--wait")
    assert given.code == 0, str(given)
    assert given.out.splitlines() == [f"hello, MiniTower! ({i}/3)" for i in (1, 2, 3)]

    detached = cli.ok("run", "hello", "-p", "count=2")
    run_id = int(detached.out.strip())  # only the id on stdout
    assert f"minitower logs {run_id} --follow" in detached.err
    shown = cli.ok("runs", "show", str(run_id), "--json").json()
    # -p count=2 went out as the integer the parameter declares; the server added name.
    assert shown["input"] == {"count": 2, "name": "world"}
    assert shown["version_no"] == 2

    pinned = cli.ok("run", "hello", "--version", "1", "--detach", "--json").json()
    assert pinned["version_no"] == 1
    assert pinned["input"] == {"name": "world", "count": 1}


def test_run_parameter_errors(cli: Cli, hello: list[Result]) -> None:
    one_line_error(cli("run", "hello", "-p", "count=many"), 4, "count takes an integer")
    one_line_error(cli("run", "hello", "-p", "nokey"), 4, "expected key=value")
    one_line_error(cli("run", "hello", "--input", "[1]"), 4, "--input must be a JSON object")
    one_line_error(cli("run", "hello", "--wait", "--detach"), 4, "cannot be used together")
    one_line_error(cli("run", "hello", "--version", "99", "-p", "a=1"), 3, "has no version 99")
    # The server checks --input against the schema too.
    one_line_error(cli("run", "hello", "--input", '{"count": "x"}'), 3, "400 invalid_request")


def test_wait_exit_codes(cli: Cli, cli_stack: CliStack, exits: str) -> None:
    completed = cli("run", exits, "--wait")
    assert completed.code == 0, str(completed)
    assert completed.out == "started -\nexiting with 0\n"

    as_json = cli("run", exits, "-p", "tag=json", "--wait", "--json")
    assert as_json.code == 0, str(as_json)
    *entries, final = [json.loads(line) for line in as_json.out.splitlines()]
    assert [e["line"] for e in entries] == ["started json", "exiting with 0"]
    assert (final["status"], final["input"]["tag"]) == ("completed", "json")

    failed = cli("run", exits, "-p", "code=3", "--wait")
    assert failed.code == 1, str(failed)
    assert "failed (exit code 3)" in failed.err

    waiting = cli.popen("run", exits, "-p", "sleep=30", "-p", "tag=cancel-me", "--wait")
    try:
        run = run_with_tag(cli_stack, "cancel-me")
        cancel = cli.ok("runs", "cancel", str(run["run_id"]))
        assert "cancelling" in cancel.out or "cancelled" in cancel.out
        cancelled = finish(waiting, timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert cancelled.code == 2, str(cancelled)
    assert "started cancel-me" in cancelled.out
    assert f"run {run['run_id']} cancelled" in cancelled.err


def test_wait_exit_code_of_a_dead_run(cli: Cli, cli_stack: CliStack, exits: str) -> None:
    doomed = cli_stack.runner("doomed-runner", environment="doomed")
    waiting = cli.popen(
        "run", exits, "-p", "sleep=60", "-p", "tag=doomed", "--environment", "doomed", "--wait"
    )
    try:
        run_with_tag(cli_stack, "doomed")
        doomed.proc.send_signal(signal.SIGKILL)
        doomed.proc.wait(10)
        # The lease (3 s) runs out without heartbeats; the reaper buries the run.
        dead = finish(waiting, timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert dead.code == 1, str(dead)
    assert "dead: its lease expired with no retries left" in dead.err


def test_wait_timeout(cli: Cli, cli_stack: CliStack, exits: str) -> None:
    result = cli("run", exits, "-p", "sleep=30", "-p", "tag=slow", "--wait", "--wait-timeout", "1s")
    one_line_error(
        Result(result.code, result.out, result.err.splitlines()[-1] + "\n", result.args),
        5,
        "stopped waiting after 1.0s",
    )
    run = run_with_tag(cli_stack, "slow", status="running")
    cli.ok("runs", "cancel", str(run["run_id"]))


# --- logs ------------------------------------------------------------------------------


def test_logs_follow_ends_when_the_run_ends(cli: Cli, cli_stack: CliStack) -> None:
    folder = write_app(
        cli_stack.workdir / "apps" / "ticker",
        "ticker",
        {
            "main.py": """\
                import sys, time
                for i in range(5):
                    print(f"tick {i}", flush=True)
                    time.sleep(0.3)
                print("to stderr", file=sys.stderr)
                """
        },
    )
    cli.ok("deploy", str(folder))
    run_id = cli.ok("run", "ticker").out.strip()
    followed = finish(cli.popen("logs", run_id, "--follow"), timeout=60)
    assert followed.code == 0, str(followed)
    assert followed.out.splitlines() == [f"tick {i}" for i in range(5)]
    assert "to stderr" in followed.err
    assert f"run {run_id} completed" in followed.err

    again = cli.ok("logs", run_id)
    assert again.out == followed.out
    assert again.err.strip() == "to stderr"
    entries = [json.loads(line) for line in cli.ok("logs", run_id, "--json").out.splitlines()]
    assert [(e["seq"], e["stream"]) for e in entries][-1][1] == "stderr"
    assert [e["line"] for e in entries if e["stream"] == "stdout"] == [
        f"tick {i}" for i in range(5)
    ]


def test_a_reader_going_away_ends_quietly(cli: Cli, cli_stack: CliStack) -> None:
    folder = write_app(
        cli_stack.workdir / "apps" / "chatty",
        "chatty",
        {"main.py": "for i in range(20000):\n    print('line', i)\n"},
    )
    cli.ok("deploy", str(folder))
    cli.ok("run", "chatty", "--wait")  # 20000 lines: more than a pipe holds
    run_id = cli.ok("runs", "list", "--app", "chatty", "--json").json()[0]["run_id"]
    proc = cli.popen("logs", str(run_id))
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline() == "line 0\n"
    proc.stdout.close()  # as `| head -1` does
    assert proc.wait(60) == 141  # as a shell tool killed by SIGPIPE
    assert proc.stderr.read() == ""
    proc.stderr.close()


def test_logs_follow_exit_code_follows_the_outcome(cli: Cli, exits: str) -> None:
    run_id = cli.ok("run", exits, "-p", "code=7").out.strip()
    followed = finish(cli.popen("logs", run_id, "-f"), timeout=60)
    assert followed.code == 1, str(followed)
    assert "exiting with 7" in followed.out


# --- listings ----------------------------------------------------------------------------


def test_every_listing_has_json(cli: Cli, hello: list[Result], exits: str) -> None:
    run_id = cli.ok("run", "hello").out.strip()
    runs = cli.ok("runs", "list", "--json").json()
    assert {"run_id", "app_slug", "status", "input", "queued_at"} <= set(runs[0])
    limited = cli.ok("runs", "list", "--app", "hello", "--limit", "1", "--json").json()
    assert [(r["run_id"], r["app_slug"]) for r in limited] == [(int(run_id), "hello")]
    wait_for(
        lambda: cli.ok("runs", "show", run_id, "--json").json()["status"] == "completed",
        timeout=60,
        what="the run to complete",
    )
    completed = cli.ok("runs", "list", "--status", "completed", "--json").json()
    assert completed and {r["status"] for r in completed} == {"completed"}
    attempts = cli.ok("runs", "attempts", run_id, "--json").json()
    assert attempts[0]["status"] == "completed" and attempts[0]["runner_name"].startswith("cli-")
    apps = cli.ok("apps", "list", "--json").json()
    assert {"hello", "exits"} <= {a["slug"] for a in apps}
    assert cli.ok("apps", "show", "hello", "--json").json()["slug"] == "hello"
    assert cli.ok("versions", "list", "hello", "--json").json()[0]["version_no"] >= 2
    assert cli.ok("versions", "show", "hello", "1", "--json").json()["version_no"] == 1
    assert cli.ok("tokens", "list", "--json").json()[0]["role"] == "admin"
    runners = cli.ok("runners", "list", "--json").json()
    assert {"cli-runner-1", "cli-runner-2"} <= {r["name"] for r in runners}
    me = cli.ok("whoami", "--json").json()
    assert me["team_slug"] == "cli-team" and me["role"] == "admin"


def test_tables_never_cut_ids_slugs_or_statuses(cli: Cli, hello: list[Result]) -> None:
    cli.ok("run", "hello", "--wait")

    # Statuses must hold still between the two listings compared below.
    def all_ended() -> list[dict[str, Any]] | None:
        found: list[dict[str, Any]] = cli.ok("runs", "list", "--json").json()
        return found if all(r["status"] in TERMINAL for r in found) else None

    runs = wait_for(all_ended, timeout=60, what="every run to end")
    for columns in ("200", "30"):
        table = cli.ok("runs", "list", env={"COLUMNS": columns}).out
        lines = table.splitlines()
        assert lines[0].split()[:5] == ["RUN", "APP", "NO.", "VERSION", "STATUS"]
        rows = [line.split() for line in lines[1:]]
        assert [(int(r[0]), r[1], r[4]) for r in rows] == [
            (run["run_id"], run["app_slug"], run["status"]) for run in runs[:20]
        ]
    apps = cli.ok("apps", "list", env={"COLUMNS": "20"}).out
    assert "hello" in apps.split()


def test_human_views(cli: Cli, hello: list[Result]) -> None:
    run_id = cli.ok("run", "hello", "--wait").err.split()[1]
    show = cli.ok("runs", "show", run_id).out
    assert "status            completed" in show
    attempts = cli.ok("runs", "attempts", run_id).out
    assert "completed" in attempts and "cli-runner-" in attempts
    assert "hello" in cli.ok("apps", "show", "hello").out
    assert "cli-runner-1" in cli.ok("runners", "list").out
    assert "team     cli-team" in cli.ok("whoami").out


def test_apps_disable_and_enable(cli: Cli, cli_stack: CliStack, tmp_path: Path) -> None:
    folder = write_app(tmp_path / "toggle", "toggle", {"main.py": "print('on')\n"})
    cli.ok("deploy", str(folder))
    assert "disabled" in cli.ok("apps", "disable", "toggle").out
    one_line_error(cli("run", "toggle"), 3, "app 'toggle' is disabled (409 app_disabled)")
    cli.ok("apps", "enable", "toggle")
    assert cli("run", "toggle", "--wait").out == "on\n"
    created = cli.ok("apps", "create", "made-by-hand", "--description", "x", "--json").json()
    assert created["description"] == "x"
    one_line_error(cli("apps", "create", "made-by-hand"), 3, "409 slug_taken")


def test_tokens_create_use_and_revoke(cli: Cli) -> None:
    made = cli.ok("tokens", "create", "--name", "ci")
    token = made.out.strip()
    assert token.startswith("mtk_") and "shown only this once" in made.err
    as_member = {"MINITOWER_API_TOKEN": token}
    assert cli.ok("whoami", "--json", env=as_member).json()["role"] == "member"
    listed = cli.ok("tokens", "list", "--json").json()
    token_id = next(t["token_id"] for t in listed if t["name"] == "ci")
    assert f"token {token_id} revoked" in cli.ok("tokens", "revoke", str(token_id)).out
    one_line_error(cli("whoami", env=as_member), 3, "the API refused the token")
    one_line_error(cli("runners", "list", env=as_member), 3, "")


def test_runner_tokens_create_register_list_and_revoke(cli_stack: CliStack) -> None:
    cli = cli_stack.cli
    made = cli.ok("runner-tokens", "create", "--name", "build-hosts")
    secret = made.out.strip()
    assert secret.startswith("mtg_") and "shown only this once" in made.err
    listed = cli.ok("runner-tokens", "list", "--json").json()
    (entry,) = [t for t in listed if t["name"] == "build-hosts"]
    assert "token" not in entry and secret not in cli.ok("runner-tokens", "list").out
    registered = cli_stack.http.post(
        "/api/v1/runners/register",
        json={"name": "cli-bound-1"},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert registered.status_code == 201, registered.text
    runners = {r["name"]: r for r in cli.ok("runners", "list", "--json").json()}
    assert runners["cli-bound-1"]["shared"] is False and runners["cli-runner-1"]["shared"]
    table = cli.ok("runners", "list").out
    assert "SCOPE" in table and "team" in table and "shared" in table
    token_id = entry["registration_token_id"]
    revoked = cli.ok("runner-tokens", "revoke", str(token_id))
    assert f"runner registration token {token_id} revoked" in revoked.out
    assert cli.ok("runner-tokens", "list", "--json").json()[0]["revoked_at"] is not None
    one_line_error(cli("runner-tokens", "revoke", "999999"), 3, "404 not_found")


# --- configuration and errors -------------------------------------------------------------


def test_login_saves_a_private_profile(cli_stack: CliStack, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {
        **{k: v for k, v in cli_stack.cli.env.items() if not k.startswith("MINITOWER_")},
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
    }
    cli = Cli(env=env, cwd=tmp_path)
    one_line_error(cli("whoami"), 4, "no API token: run `minitower login")
    url, token = cli_stack.api.url, cli_stack.team.token
    one_line_error(cli("login", "--server", url, "--token", "mtk_wrong"), 3, "refused the token")
    logged = cli.ok("login", "--server", url, "--token", token)
    assert "as team cli-team" in logged.out
    path = tmp_path / "xdg" / "minitower" / "config.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert token in path.read_text()
    assert not (home / ".config").exists()

    assert cli.ok("whoami", "--json").json()["team_slug"] == "cli-team"
    # Environment variables, then flags, override the profile.
    one_line_error(
        cli("whoami", env={"MINITOWER_API_TOKEN": "mtk_nope"}),
        3,
        "the API refused the token (from MINITOWER_API_TOKEN)",
    )
    one_line_error(cli("--token", "mtk_nope", "whoami"), 3, "(from --token)")
    unreachable = f"http://127.0.0.1:{free_port()}"
    one_line_error(
        cli("--server", unreachable, "whoami"), 3, f"cannot reach the API at {unreachable}"
    )
    one_line_error(
        cli("whoami", env={"MINITOWER_SERVER_URL": unreachable}), 3, "cannot reach the API"
    )
    one_line_error(cli("--profile", "staging", "whoami"), 4, "no profile 'staging'")

    cli.ok("--profile", "staging", "login", "--server", url, "--token", token)
    assert "profile  staging" in cli.ok("whoami").out  # the last login is the default
    assert "profile  default" in cli.ok("--profile", "default", "whoami").out
    assert "removed profile staging" in cli.ok("logout").out
    # With no default left, the profile named "default" applies; remove it too.
    assert "profile  default" in cli.ok("whoami").out
    cli.ok("logout", "--profile", "default")
    one_line_error(cli("whoami"), 4, "no API token")


def test_errors_are_one_line(cli: Cli, hello: list[Result]) -> None:
    one_line_error(cli("run", "nope"), 3, "app 'nope' not found (404 not_found)")
    one_line_error(cli("logs", "987654"), 3, "run 987654 not found")
    one_line_error(cli("runs", "show", "987654"), 3, "run 987654 not found")
    one_line_error(cli("runs", "cancel", "987654"), 3, "run 987654 not found")
    one_line_error(cli("versions", "list", "nope"), 3, "app 'nope' not found")
    one_line_error(cli("runs", "list", "--status", "sleeping"), 4, "use one of queued")
    one_line_error(cli("runs", "show", "abc"), 4, "should be a valid integer")
    one_line_error(cli("run"), 4, "Missing argument")
    one_line_error(cli("frobnicate"), 4, "No such command")
    one_line_error(cli("whoami", "--server", "x"), 4, "No such option")  # global goes first
    one_line_error(cli("--server", "localhost:1", "whoami"), 4, "is not an http:// or https:// URL")


def test_the_report_example_with_its_requirements(
    cli: Cli, cli_stack: CliStack, tmp_path: Path
) -> None:
    """examples/report end to end, offline: its runner installs requirements.txt from a
    wheelhouse holding a small stand-in for tabulate (no index is reachable in tests)."""
    wheelhouse = tmp_path / "wheels"
    make_wheel(
        wheelhouse,
        "tabulate",
        "0.9.0",
        "def tabulate(rows, headers, tablefmt):\n"
        "    lines = [tablefmt + ' ' + ' '.join(headers)]\n"
        "    lines += [' '.join(str(c) for c in row) for row in rows]\n"
        "    return '\\n'.join(lines)\n",
    )
    cli_stack.runner(
        "offline-runner",
        environment="offline",
        MINITOWER_PIP_FIND_LINKS=str(wheelhouse),
        MINITOWER_PIP_NO_INDEX="true",
    )
    cli.ok("deploy", str(EXAMPLES / "report"))
    result = cli(
        "run",
        "report",
        "-p",
        "rows=2",
        "-p",
        "growth=10",
        "-p",
        "markdown=true",
        "--environment",
        "offline",
        "--wait",
    )
    assert result.code == 0, str(result)
    assert result.out.splitlines() == ["github period value", "1 110.0", "2 121.0"]
    assert "tabulate==0.9.0" in result.err  # the venv build, in the run's log
