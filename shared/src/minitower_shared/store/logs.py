"""Reading a run's log lines, and which of a batch an attempt has already."""

from sqlmodel import Session, col, or_, select

from minitower_shared.models import RunAttempt, RunLog


def list_attempt_logs(
    session: Session, attempt_id: int, *, after_seq: int, limit: int
) -> list[RunLog]:
    return list(
        session.exec(
            select(RunLog)
            .where(RunLog.attempt_id == attempt_id, col(RunLog.seq) > after_seq)
            .order_by(col(RunLog.seq))
            .limit(limit)
        )
    )


def list_run_logs_after(
    session: Session, run_id: int, *, after_attempt: int, after_seq: int, limit: int
) -> list[tuple[RunLog, int]]:
    """Lines of every attempt of the run after the position (attempt_no, seq), in order:
    what a live follower has not seen yet."""
    rows = session.exec(
        select(RunLog, RunAttempt.attempt_no)
        .join(RunAttempt, col(RunAttempt.id) == col(RunLog.attempt_id))
        .where(
            RunAttempt.run_id == run_id,
            or_(
                col(RunAttempt.attempt_no) > after_attempt,
                (col(RunAttempt.attempt_no) == after_attempt) & (col(RunLog.seq) > after_seq),
            ),
        )
        .order_by(col(RunAttempt.attempt_no), col(RunLog.seq))
        .limit(limit)
    )
    return [(log, attempt_no) for log, attempt_no in rows]


def stored_seqs(session: Session, attempt_id: int, seqs: list[int]) -> set[int]:
    """Which of ``seqs`` the attempt already has (a resent batch)."""
    if not seqs:
        return set()
    return set(
        session.exec(
            select(RunLog.seq).where(RunLog.attempt_id == attempt_id, col(RunLog.seq).in_(seqs))
        )
    )


def list_attempt_log_text(
    session: Session, attempt_id: int, *, after_seq: int, limit: int
) -> list[tuple[int, str, str]]:
    """``(seq, stream, line)`` of one attempt's lines after ``after_seq``: plain rows,
    for reading a whole log as text without building an object per line."""
    rows = session.execute(
        select(RunLog.seq, RunLog.stream, RunLog.line)
        .where(RunLog.attempt_id == attempt_id, col(RunLog.seq) > after_seq)
        .order_by(col(RunLog.seq))
        .limit(limit)
    )
    return [(seq, stream, line) for seq, stream, line in rows]
