"""Slow query logging: one ``slow query`` event per statement over the threshold, with
its duration and its text but never its parameters; nothing without a threshold."""

import logging
from pathlib import Path

import pytest
from sqlalchemy import text

from minitower_shared.db import create_db_engine, read_session

SECRET = "mtk_not-for-the-log"


def _slow_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == "minitower.db" and r.getMessage() == "slow query"
    ]


@pytest.mark.parametrize("threshold", [0.0, 0.001])
def test_statements_over_the_threshold_are_logged_without_parameters(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, threshold: float
) -> None:
    engine = create_db_engine(tmp_path / "slow.db", pool_size=1, slow_query_threshold=threshold)
    # A recursive count to a million takes tens of milliseconds: over 1 ms anywhere.
    slow = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000) "
        "SELECT count(*) FROM n WHERE :secret != ''"
    )
    with caplog.at_level(logging.WARNING, logger="minitower.db"), read_session(engine) as session:
        assert session.execute(text(slow), {"secret": SECRET}).scalar_one() == 1_000_000
    engine.dispose()
    records = _slow_records(caplog)
    counted = [r for r in records if "count(*)" in r.statement]  # type: ignore[attr-defined]
    assert len(counted) == 1
    assert counted[0].duration_ms >= 1  # type: ignore[attr-defined]
    assert all(SECRET not in r.getMessage() + str(r.__dict__) for r in records)


def test_no_threshold_logs_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    engine = create_db_engine(tmp_path / "quiet.db", pool_size=1, slow_query_threshold=None)
    with caplog.at_level(logging.DEBUG, logger="minitower.db"), read_session(engine) as session:
        session.execute(text("SELECT 1"))
    engine.dispose()
    assert _slow_records(caplog) == []
