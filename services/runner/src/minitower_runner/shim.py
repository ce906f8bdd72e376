"""The workload's parent: ties the whole process group to the runner's life.

Started by the process executor as the leader of a new process group, with the runner's
pid and the workload's command line as arguments. It asks the kernel for a signal when
the runner dies (``PR_SET_PDEATHSIG``, which survives even SIGKILL of the runner) and then
kills its whole group, so no workload process of an attempt outlives the runner and a
retried run never overlaps an orphan. It ignores the SIGTERM that the runner sends to
the group on cancel or timeout (the workload gets it) and exits as the workload did.

Runs as ``python -I -S shim.py``: standard library only, nothing imported from the runner.
"""

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1
_PARENT_DIED = signal.SIGUSR2


def _kill_group(_signum: int, _frame: object) -> None:
    os.killpg(0, signal.SIGKILL)


def main(argv: list[str]) -> int:
    runner_pid, command = int(argv[1]), argv[2:]
    signal.signal(_PARENT_DIED, _kill_group)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(_PARENT_DIED), 0, 0, 0) != 0:
        os.write(2, b"minitower: prctl(PR_SET_PDEATHSIG) failed\n")
        return 125
    if os.getppid() != runner_pid:  # the runner died before prctl took effect
        _kill_group(0, None)
    try:
        # The workload starts with default dispositions: not the ones set above, nor
        # the SIGPIPE and SIGXFSZ that Python itself ignores.
        pid = os.posix_spawn(
            command[0],
            command,
            os.environ,
            setsigdef=(
                signal.SIGTERM,
                signal.SIGINT,
                _PARENT_DIED,
                signal.SIGPIPE,
                signal.SIGXFSZ,
            ),
        )
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
