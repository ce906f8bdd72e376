"""Runs executed end to end by a real runner process against a live API: input in,
output out in order, exit codes, the workload's environment and its limits."""

import json

import pytest

from tests.support.archives import HELLO_TOWERFILE, make_archive
from tests.support.clients import check
from tests.support.runner_stack import Stack, assert_no_traceback

pytestmark = pytest.mark.slow

# The parameters of the suite's hello app: greeting="hello", count=1.
PARAMS = HELLO_TOWERFILE[HELLO_TOWERFILE.index("[[parameters]]") :]


def test_input_output_and_completed(stack: Stack) -> None:
    stack.deploy(
        "hello",
        {
            "main.py": """\
            import json, os, sys
            for i in range(int(os.environ["count"])):
                print(f"{os.environ['greeting']} {os.environ['who']} {i}")
            print("to stderr", file=sys.stderr)
            print(json.dumps(json.loads(os.environ["MINITOWER_INPUT"]), sort_keys=True))
            print(os.environ["flags"], os.environ["MINITOWER_RUN_ID"], os.environ["MINITOWER_APP"])
            """
        },
        extra=PARAMS,
    )
    runner = stack.runner()
    run_id = stack.start_run("hello", input={"who": "world", "flags": {"a": [1, True]}, "count": 2})
    run = stack.wait_status(run_id)
    assert run["status"] == "completed", (run, runner.log())
    assert run["exit_code"] == 0
    assert stack.lines(run_id, "stdout") == [
        "hello world 0",
        "hello world 1",
        json.dumps(
            {"count": 2, "flags": {"a": [1, True]}, "greeting": "hello", "who": "world"},
            sort_keys=True,
        ),
        f'{{"a": [1, true]}} {run_id} hello',
    ]
    assert stack.lines(run_id, "stderr") == ["to stderr"]
    seqs = [entry["seq"] for entry in stack.logs(run_id)]
    assert seqs == list(range(1, len(seqs) + 1))
    assert_no_traceback(runner)


def test_nonzero_exit_is_failed_with_its_code(stack: Stack) -> None:
    stack.deploy("broken", {"main.py": "import sys\nprint('bye')\nsys.exit(3)\n"})
    stack.runner()
    run = stack.wait_status(stack.start_run("broken"))
    assert run["status"] == "failed"
    assert run["exit_code"] == 3
    assert "exited with code 3" in run["error_message"]
    assert stack.lines(run["run_id"]) == ["bye"]


def test_an_exception_is_failed_with_the_traceback_in_the_logs(stack: Stack) -> None:
    stack.deploy("raises", {"main.py": "raise RuntimeError('boom')\n"})
    stack.runner()
    run = stack.wait_status(stack.start_run("raises"))
    assert run["status"] == "failed" and run["exit_code"] == 1
    assert "RuntimeError: boom" in stack.lines(run["run_id"], "stderr")


def test_workload_sees_no_runner_secret(stack: Stack) -> None:
    stack.deploy(
        "env",
        {
            "main.py": """\
            import os
            for key in sorted(os.environ):
                print(key, "=", os.environ[key])
            """
        },
    )
    runner = stack.runner()
    run = stack.wait_status(stack.start_run("env"))
    assert run["status"] == "completed"
    output = "\n".join(stack.lines(run["run_id"]))
    assert "canary-value" not in output
    assert "MINITOWER_RUNNER_REGISTRATION_TOKEN" not in output
    assert "mtr_" not in output  # the runner token
    names = {line.split(" = ")[0] for line in stack.lines(run["run_id"])}
    assert {"PATH", "HOME", "VIRTUAL_ENV", "MINITOWER_INPUT", "MINITOWER_RUN_ID"} <= names
    assert not any(
        n.startswith("MINITOWER_")
        and n
        not in {
            "MINITOWER_INPUT",
            "MINITOWER_RUN_ID",
            "MINITOWER_RUN_NO",
            "MINITOWER_ATTEMPT_NO",
            "MINITOWER_APP",
            "MINITOWER_VERSION_NO",
        }
        for n in names
    ), names
    assert_no_traceback(runner)


def test_import_paths_and_shell_entrypoints(stack: Stack) -> None:
    stack.deploy(
        "paths",
        {
            "src/lib/helper.py": "VALUE = 'from src'\n",
            "main.py": "from lib.helper import VALUE\nprint(VALUE)\n",
        },
        extra='import_paths = ["src"]\n',
    )
    stack.deploy(
        "shell",
        {"run.sh": 'echo "shell says $greeting"\necho oops >&2\nexit 4\n'},
        script="run.sh",
        extra='[[parameters]]\nname = "greeting"\ndefault = "hi"\n',
    )
    stack.runner()
    first = stack.wait_status(stack.start_run("paths"))
    assert first["status"] == "completed", first
    assert stack.lines(first["run_id"]) == ["from src"]
    second = stack.wait_status(stack.start_run("shell"))
    assert (second["status"], second["exit_code"]) == ("failed", 4)
    assert stack.lines(second["run_id"], "stdout") == ["shell says hi"]
    assert stack.lines(second["run_id"], "stderr") == ["oops"]


# Alone: 5000 lines must reach the API within the 5 s lease, which tests beside it on the
# same cores can slow past.
@pytest.mark.serial
def test_many_lines_arrive_once_in_order_and_long_lines_are_cut(stack: Stack) -> None:
    stack.deploy(
        "chatty",
        {
            "main.py": """\
            import sys
            for i in range(5000):
                print(f"line {i}")
            print("x" * 100_000)
            sys.stdout.write("no newline at the end")
            """
        },
    )
    stack.runner()
    run = stack.wait_status(stack.start_run("chatty"))
    assert run["status"] == "completed", run
    lines = stack.lines(run["run_id"])
    assert lines[:5000] == [f"line {i}" for i in range(5000)]
    cut = lines[5000]
    assert cut.startswith("x" * 1000) and cut.endswith("more bytes not kept]")
    assert len(cut) < 64 * 1024
    assert lines[5001:] == ["no newline at the end"]


def test_an_entrypoint_of_another_kind_is_a_clear_failure(stack: Stack) -> None:
    stack.team.create_app("binary")
    check(stack.team.upload("binary", make_archive({"tool.bin": "x"}), entrypoint="tool.bin"), 201)
    stack.runner()
    run = stack.wait_status(stack.start_run("binary"))
    assert run["status"] == "failed"
    assert "neither a .py nor a .sh" in run["error_message"]


def test_a_workload_killed_by_a_signal_reports_it(stack: Stack) -> None:
    stack.deploy(
        "self-kill", {"main.py": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n"}
    )
    stack.runner()
    run = stack.wait_status(stack.start_run("self-kill"))
    assert (run["status"], run["exit_code"]) == ("failed", -9)
    assert run["error_message"] == "killed by SIGKILL"


def test_shell_workloads_get_default_signal_dispositions(stack: Stack) -> None:
    """The runner is Python, which ignores SIGPIPE; its workloads must not inherit that,
    or `yes | head -1` complains of a broken pipe instead of ending quietly."""
    stack.deploy(
        "pipes", {"run.sh": "yes | head -1\ngrep SigIgn /proc/self/status\n"}, script="run.sh"
    )
    stack.runner()
    run = stack.wait_status(stack.start_run("pipes"))
    assert run["status"] == "completed", run
    assert stack.lines(run["run_id"], "stderr") == []
    ignored = int(stack.lines(run["run_id"], "stdout")[1].split()[1], 16)
    assert ignored & (1 << (13 - 1)) == 0  # SIGPIPE is not ignored
