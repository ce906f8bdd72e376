"""minitowerd lifts its soft limit on open files so that MINITOWER_MAX_CONNECTIONS, not
EMFILE, is what a flood of connections meets."""

import logging

import pytest

from minitower_api import cli


def _fake_limits(monkeypatch: pytest.MonkeyPatch, soft: int, hard: int) -> list[tuple[int, int]]:
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(cli.resource, "getrlimit", lambda _which: (soft, hard))
    monkeypatch.setattr(cli.resource, "setrlimit", lambda _which, limits: calls.append(limits))
    return calls


def test_the_soft_limit_is_raised_to_fit_the_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_limits(monkeypatch, 1024, 524288)
    cli._raise_open_files_limit(1000, logging.getLogger("test"))
    assert calls == [(1064, 524288)]


def test_a_hard_limit_too_low_is_used_and_said(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls = _fake_limits(monkeypatch, 256, 512)
    with caplog.at_level(logging.WARNING):
        cli._raise_open_files_limit(1000, logging.getLogger("test"))
    assert calls == [(512, 512)]
    assert "open files limited to 512" in caplog.text


def test_a_high_enough_limit_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_limits(monkeypatch, 65536, 65536)
    cli._raise_open_files_limit(1000, logging.getLogger("test"))
    assert calls == []
