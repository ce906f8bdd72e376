"""The suite's check that it leaves no process running: at the session's end, every
child of the pytest process (of each pytest-xdist worker) still alive is a process a
test started and never stopped (a runner polling a dead API, say). The root conftest's
``pytest_sessionfinish`` kills them and fails the run, naming them."""

import contextlib
import os
import signal

import pytest

from tests.support.proctree import alive, children_of, command_line


def interpreter_helper(command: str) -> bool:
    """multiprocessing's resource tracker (or forkserver): started by the race tests'
    process pools, it belongs to this interpreter and ends with it."""
    return "from multiprocessing." in command


def kill_leftover_processes() -> dict[int, str]:
    """This process's children still running (pid → command line), killed."""
    left = {
        pid: cmd
        for pid in children_of(os.getpid())
        if alive(pid) and not interpreter_helper(cmd := command_line(pid))
    }
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left


def is_xdist_controller(config: pytest.Config) -> bool:
    """The pytest-xdist controller runs no test: its children are the workers."""
    return config.pluginmanager.has_plugin("dsession")
