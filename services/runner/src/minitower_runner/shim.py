"""The workload's parent: ties the whole process group to the runner's life.

Started by the process executor as the leader of a new process group, with the runner's
pid and the workload's command line as arguments. It asks the kernel for a signal when
the runner dies (``PR_SET_PDEATHSIG``, which survives even SIGKILL of the runner) and then
kills its whole group, so no workload process of an attempt outlives the runner and a
retried run never overlaps an orphan. It ignores the SIGTERM that the runner sends to
the group on cancel or timeout (the workload gets it) and exits as the workload did.

With ``--env-fd FD``, the shim reads a JSON object of variables from FD (to its end) and
adds them to the workload's environment: the run's secrets, which so never appear in the
shim's own environment or command line.

With ``--as UID:GID:DIR`` (a shared runner), the shim stays the runner's user and starts
the workload under that uid and gid, in DIR, with no supplementary groups, no capabilities and
``no_new_privs``: the workload cannot signal, trace or read the shim or the runner.

Runs as ``python -I -S shim.py``: standard library only, nothing imported from the runner.
"""

import ctypes
import json
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_PARENT_DIED = signal.SIGUSR2
# The workload starts with default dispositions: not the ones set here, nor the SIGPIPE
# and SIGXFSZ that Python itself ignores.
_DEFAULT_SIGNALS = (signal.SIGTERM, signal.SIGINT, _PARENT_DIED, signal.SIGPIPE, signal.SIGXFSZ)


def _kill_group(_signum: int, _frame: object) -> None:
    os.killpg(0, signal.SIGKILL)


def _read_env(fd: int) -> dict[str, str]:
    chunks = []
    with os.fdopen(fd, "rb") as pipe:
        while chunk := pipe.read(65536):
            chunks.append(chunk)
    variables = json.loads(b"".join(chunks))
    return {str(k): str(v) for k, v in variables.items()}


def _spawn_as(
    command: list[str], env: dict[str, str], uid: int, gid: int, cwd: str, libc: ctypes.CDLL
) -> int:
    """fork, drop to ``uid``:``gid`` for good, exec. A failure to drop is fatal: the
    workload never runs with the runner's rights."""
    pid = os.fork()
    if pid != 0:
        return pid
    try:
        for signum in _DEFAULT_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        # Ambient capabilities survive a change between two non-root uids (a runner
        # given CAP_SETUID by its container): clear them, or the workload would inherit.
        libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if os.getresuid() != (uid, uid, uid) or os.getgroups() not in ([], [gid]):
            raise OSError(1, "the uid did not change")
        # Only now: the workspace is the workload user's, private to it.
        os.chdir(cwd)
        os.execve(command[0], command, env)  # noqa: S606 - the workload, as posix_spawn
    except OSError as exc:
        os.write(2, f"minitower: cannot start {command[0]} as {uid}:{gid}: {exc}\n".encode())
    os._exit(127)


def main(argv: list[str]) -> int:
    runner_pid, command = int(argv[1]), argv[2:]
    env = dict(os.environ)
    if command[:1] == ["--env-fd"]:
        env.update(_read_env(int(command[1])))
        command = command[2:]
    as_user: tuple[int, int, str] | None = None
    if command[:1] == ["--as"]:
        uid, gid, cwd = command[1].split(":", 2)
        as_user, command = (int(uid), int(gid), cwd), command[2:]
    signal.signal(_PARENT_DIED, _kill_group)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(_PARENT_DIED), 0, 0, 0) != 0:
        os.write(2, b"minitower: prctl(PR_SET_PDEATHSIG) failed\n")
        return 125
    if os.getppid() != runner_pid:  # the runner died before prctl took effect
        _kill_group(0, None)
    if as_user is not None:
        pid = _spawn_as(command, env, *as_user, libc)
    else:
        try:
            pid = os.posix_spawn(command[0], command, env, setsigdef=_DEFAULT_SIGNALS)
        except OSError as exc:
            os.write(2, f"minitower: cannot start {command[0]}: {exc.strerror}\n".encode())
            return 127
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        # Report the signal as the workload's own death, as a shell does.
        signum = os.WTERMSIG(status)
        if signum not in (signal.SIGKILL, signal.SIGSTOP):  # those cannot be handled
            signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
