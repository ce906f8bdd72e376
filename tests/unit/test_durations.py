"""Human durations in settings: plain seconds and suffixed values."""

import math

import pytest
from pydantic import ValidationError

from minitower_reaper.settings import ReaperSettings
from minitower_shared.durations import parse_duration


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (30, 30.0),
        (0, 0.0),
        (2.5, 2.5),
        ("30", 30.0),
        ("0", 0.0),
        ("0.5", 0.5),
        ("0.5s", 0.5),
        ("2s", 2.0),
        ("500ms", 0.5),
        ("1ms", 0.001),
        ("2m", 120.0),
        ("1.5m", 90.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        (" 2m ", 120.0),
        ("2 m", 120.0),
    ],
)
def test_parses(value: object, seconds: float) -> None:
    result = parse_duration(value)
    assert isinstance(result, float)
    assert result == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    [
        "",
        " ",
        "s",
        "abc",
        "2x",
        "2 seconds",
        "1h30m",
        "2S",
        "1e3",
        ".5s",
        "5.s",
        "PT5S",
        "nan",
        "inf",
        "2m ms",
    ],
)
def test_rejects_garbage(value: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(value)


@pytest.mark.parametrize("value", [-1, -0.5, "-1", "-1s", "-500ms"])
def test_rejects_negative(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


@pytest.mark.parametrize("value", [True, False])
def test_rejects_bool(value: bool) -> None:
    # bool is an int subclass: True must not silently become one second.
    with pytest.raises(ValueError):
        parse_duration(value)


@pytest.mark.parametrize("value", [None, [30], {"s": 30}, b"30", object()])
def test_rejects_other_types(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_rejects_non_finite_numbers(value: float) -> None:
    # NaN slips past every comparison (``nan < 0`` is false) and infinity overflows
    # timedelta arithmetic later, far from the setting that caused it.
    with pytest.raises(ValueError):
        parse_duration(value)


def test_settings_read_suffixed_durations(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINITOWER_EXPIRY_CHECK_INTERVAL", "200ms")
    monkeypatch.setenv("MINITOWER_RUNNER_OFFLINE_AFTER", "2m")
    settings = ReaperSettings(_env_file=None)
    assert settings.expiry_check_interval == pytest.approx(0.2)
    assert settings.runner_offline_after == 120.0


def test_settings_refuse_an_invalid_duration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINITOWER_EXPIRY_CHECK_INTERVAL", "soon")
    with pytest.raises(ValidationError, match="invalid duration"):
        ReaperSettings(_env_file=None)
