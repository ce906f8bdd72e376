"""Who a process-isolated workload runs as, and what it can reach.

A runner that may serve more than one team (a shared runner) runs each workload under a
uid and gid of its own (``MINITOWER_RUNNER_WORKLOAD_UID``/``_GID``), with no
supplementary groups, so that one team's code cannot read the runner's token, write into
the venv cache, or read another run's workspace:

- the data directory and the work root are mode 0711, owned by the runner: a workload
  can pass through to its own workspace but list nothing, and the token file is 0600;
- the venv cache is owned by the runner and not writable by anyone else;
- each workspace is handed to the workload uid (mode 0700) for its run, taken back and
  removed after it.

Switching uids needs root or CAP_SETUID and CAP_SETGID. A shared runner that has neither
refuses to start in process isolation, unless its operator says every team it serves
trusts every other (``MINITOWER_RUNNER_TRUST_ALL_TEAMS``). A runner bound to one team
runs workloads as itself: there is no other team's run for them to reach.
"""

import os
import shutil
import stat
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

# Bits of /proc/self/status CapEff (linux/capability.h).
_CAP_SETGID = 6
_CAP_SETUID = 7


class IsolationRefused(Exception):
    """The runner cannot keep its workloads apart as its binding requires; the message
    says why and what to do."""


@dataclass(frozen=True)
class WorkloadUser:
    uid: int
    gid: int


def effective_capabilities() -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def can_switch_uids() -> bool:
    if os.geteuid() == 0:
        return True
    needed = (1 << _CAP_SETUID) | (1 << _CAP_SETGID)
    return effective_capabilities() & needed == needed


def workload_user(
    *, shared: bool, uid: int, gid: int, trust_all_teams: bool
) -> WorkloadUser | None:
    """The user a workload runs as on this runner (None: the runner's own), or
    IsolationRefused when a shared runner cannot switch uids."""
    if not shared or trust_all_teams:
        return None
    if uid == os.geteuid() or uid == 0 or gid == 0:
        raise IsolationRefused(
            f"MINITOWER_RUNNER_WORKLOAD_UID/GID ({uid}:{gid}) must differ from the runner's "
            "own uid and from root: workloads of a shared runner run under a uid of their own"
        )
    if not can_switch_uids():
        raise IsolationRefused(
            "this runner is shared (registered with the operator's registration token), so "
            "it may run several teams' code, but it cannot run workloads under another uid "
            f"(it runs as uid {os.geteuid()}, without root or CAP_SETUID and CAP_SETGID). "
            "Bind it to one team (register it with a team's runner registration token: "
            "`minitower runner-tokens create`), use MINITOWER_RUNNER_ISOLATION=docker, or "
            "start it as root (it runs workloads as MINITOWER_RUNNER_WORKLOAD_UID)"
        )
    return WorkloadUser(uid, gid)


def _searchable_by(path: Path, user: WorkloadUser) -> bool:
    info = path.stat()
    if info.st_uid == user.uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid == user.gid:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


def check_reachable(path: Path, user: WorkloadUser, what: str) -> None:
    """Workloads must pass through every folder above their workspace and the venvs."""
    for folder in [*reversed(path.resolve().parents), path.resolve()]:
        if not _searchable_by(folder, user):
            raise IsolationRefused(
                f"workloads run as uid {user.uid}, which cannot pass through {folder} "
                f"(mode {stat.S_IMODE(folder.stat().st_mode):04o}) to reach {what} {path}; "
                "choose a MINITOWER_DATA_DIR (and MINITOWER_VENV_CACHE_DIR) whose parent "
                "folders others may pass through, e.g. /var/lib/minitower/runner"
            )


def check_runnable(interpreter: Path, user: WorkloadUser) -> None:
    """The venvs' Python is a link to this interpreter, which the workload user runs."""
    real = interpreter.resolve()
    check_reachable(real.parent, user, "the interpreter in")
    info = real.stat()
    if info.st_uid == user.uid:
        bit = stat.S_IXUSR
    elif info.st_gid == user.gid:
        bit = stat.S_IXGRP
    else:
        bit = stat.S_IXOTH
    if not info.st_mode & bit:
        raise IsolationRefused(
            f"workloads run as uid {user.uid}, which cannot run the interpreter {real}; "
            "set MINITOWER_RUNNER_PYTHON to one it can (e.g. /usr/bin/python3)"
        )


def secure_runner_dirs(data_dir: Path, work_root: Path, venvs_dir: Path) -> None:
    """Passable but not listable by workloads; the venv cache readable, never writable."""
    for folder in (data_dir, work_root):
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o711)  # noqa: S103 - pass through, never list
    venvs_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(venvs_dir, 0o755)  # noqa: S103 - workloads run the venvs' Python


def hand_over(workspace: Path, user: WorkloadUser) -> None:
    """Give the run's workspace to the workload user, private to it."""
    # Mode first: once the workload user owns it, changing the mode would need
    # CAP_FOWNER, which compose's runner does not have.
    os.chmod(workspace, 0o700)
    for root, dirs, files in os.walk(workspace):
        for name in [*dirs, *files]:
            os.lchown(os.path.join(root, name), user.uid, user.gid)
    os.chown(workspace, user.uid, user.gid)


def _reclaim(top: str, uid: int, gid: int) -> None:
    """Take back what a workload left, whatever modes it set: a folder becomes the
    runner's first (CAP_CHOWN is enough, no DAC_OVERRIDE), then readable, then walked.
    Iterative: a workload may nest folders deeper than Python's recursion limit."""
    pending = [top]
    while pending:
        path = pending.pop()
        os.lchown(path, uid, gid)
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            continue
        os.chmod(path, 0o700)
        with os.scandir(path) as entries:
            pending.extend(entry.path for entry in entries)


def remove_workspace(workspace: Path) -> None:
    """Remove a run's workspace, taking it back from the workload user first."""
    info = os.lstat(workspace)
    if info.st_uid != os.geteuid():
        with suppress(OSError):  # rmtree below removes what it can
            _reclaim(str(workspace), os.geteuid(), os.getegid())
    shutil.rmtree(workspace, ignore_errors=True)
