"""The cap on log bytes per attempt (``MINITOWER_MAX_LOG_BYTES_PER_ATTEMPT``).

Lines are stored while the attempt's total stays within the cap. The first line that
would pass it is replaced by one truncation line, and every later line is accepted (2xx,
so the runner does not resend it for ever) but dropped. What an attempt has stored is
kept in its row (``run_attempt.log_bytes``, ``log_truncated``) and changed in the
transaction that stores the lines, so every API process of a database counts against
one budget (see :func:`minitower_shared.store.lifecycle.append_logs`).
"""

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

TRUNCATION_PREFIX = "[minitower] log truncated:"


def truncation_line(max_bytes: int) -> str:
    return (
        f"{TRUNCATION_PREFIX} this attempt reached the limit of {max_bytes} bytes of log "
        "(MINITOWER_MAX_LOG_BYTES_PER_ATTEMPT); later lines are dropped"
    )


@dataclass(frozen=True)
class Budget:
    # The UTF-8 bytes of the stored lines counted against the cap.
    stored_bytes: int
    truncated: bool


@dataclass(frozen=True)
class Admitted:
    lines: list[dict[str, Any]]
    dropped: int
    after: Budget


def admit(
    budget: Budget, stored: Collection[int], lines: list[dict[str, Any]], max_bytes: int
) -> Admitted:
    """Which of ``lines`` to store (in seq order, with the truncation line where the cap
    is reached) and the budget after them. ``stored``: the seqs among ``lines`` that the
    attempt has already (a resent batch), which are neither stored again nor counted."""
    if budget.truncated:
        return Admitted(lines=[], dropped=len(lines), after=budget)
    fresh: dict[int, dict[str, Any]] = {}
    for line in lines:
        if line["seq"] not in stored:
            fresh.setdefault(line["seq"], line)
    kept: list[dict[str, Any]] = []
    total = budget.stored_bytes
    for index, seq in enumerate(sorted(fresh)):
        line = fresh[seq]
        size = len(line["line"].encode())
        if total + size > max_bytes:
            marker = {**line, "stream": "stderr", "line": truncation_line(max_bytes)}
            kept.append(marker)
            return Admitted(kept, len(fresh) - index, Budget(total, truncated=True))
        total += size
        kept.append(line)
    return Admitted(kept, 0, Budget(total, truncated=False))
