"""The cap on log bytes per attempt (``MINITOWER_MAX_LOG_BYTES_PER_ATTEMPT``).

Lines are stored while the attempt's total stays within the cap. The first line that
would pass it is replaced by one truncation line, and every later line is accepted (2xx,
so the runner does not resend it for ever) but dropped. What each attempt has stored is
kept in memory, loaded from the database the first time this process sees the attempt
(after a restart, say), so a batch costs no scan of the attempt's lines.
"""

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from minitower_shared.store import logs as log_store

TRUNCATION_PREFIX = "[minitower] log truncated:"
# Attempts remembered; one forgotten is loaded again from the database when it writes.
_REMEMBERED = 4096


def truncation_line(max_bytes: int) -> str:
    return (
        f"{TRUNCATION_PREFIX} this attempt reached the limit of {max_bytes} bytes of log "
        "(MINITOWER_MAX_LOG_BYTES_PER_ATTEMPT); later lines are dropped"
    )


@dataclass(frozen=True)
class Budget:
    stored_bytes: int
    truncated: bool


@dataclass(frozen=True)
class Admitted:
    lines: list[dict[str, Any]]
    dropped: int
    after: Budget


class LogBudgets:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._budgets: OrderedDict[int, Budget] = OrderedDict()
        # Held across a log append's transaction, so that two batches of one attempt
        # never plan against the same remembered total (SQLite serialises the writes
        # anyway, so this costs no concurrency).
        self.lock = threading.Lock()

    def admit(self, session: Session, attempt_id: int, lines: list[dict[str, Any]]) -> Admitted:
        """Which of ``lines`` to store (in seq order, with the truncation line where the
        cap is reached) and the budget after them. Call with ``lock`` held; remember the
        result only once the transaction has committed."""
        budget = self._budgets.get(attempt_id) or Budget(
            stored_bytes=log_store.stored_log_bytes(session, attempt_id),
            truncated=log_store.has_line_starting(session, attempt_id, TRUNCATION_PREFIX),
        )
        if budget.truncated:
            return Admitted(lines=[], dropped=len(lines), after=budget)
        seen = log_store.stored_seqs(session, attempt_id, [line["seq"] for line in lines])
        fresh: dict[int, dict[str, Any]] = {}
        for line in lines:
            if line["seq"] not in seen:
                fresh.setdefault(line["seq"], line)
        kept: list[dict[str, Any]] = []
        stored = budget.stored_bytes
        for index, seq in enumerate(sorted(fresh)):
            line = fresh[seq]
            size = len(line["line"].encode())
            if stored + size > self.max_bytes:
                marker = {**line, "stream": "stderr", "line": truncation_line(self.max_bytes)}
                kept.append(marker)
                return Admitted(kept, len(fresh) - index, Budget(stored, truncated=True))
            stored += size
            kept.append(line)
        return Admitted(kept, 0, Budget(stored, truncated=False))

    def remember(self, attempt_id: int, budget: Budget) -> None:
        self._budgets[attempt_id] = budget
        self._budgets.move_to_end(attempt_id)
        while len(self._budgets) > _REMEMBERED:
            self._budgets.popitem(last=False)

    def forget(self, attempt_id: int) -> None:
        self._budgets.pop(attempt_id, None)
