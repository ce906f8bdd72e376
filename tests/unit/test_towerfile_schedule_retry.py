"""The Towerfile's ``[app] schedule``/``timezone`` and ``[app.retry]``."""

import pytest

from minitower_shared.towerfile import TowerfileError, parse_towerfile

BASE = '[app]\nname = "etl"\nscript = "main.py"\n'


def test_schedule_timezone_and_retry_are_read() -> None:
    towerfile = parse_towerfile(
        BASE
        + 'schedule = "@daily"\ntimezone = "America/New_York"\n'
        + '[app.retry]\nmax_retries = 3\nretry_on = ["lost", "timeout"]\n'
        + "retry_delay = 1.5\nretry_backoff = 3\nretry_max_delay = 600\n"
    )
    assert (towerfile.schedule, towerfile.timezone) == ("@daily", "America/New_York")
    assert towerfile.retry == {
        "max_retries": 3,
        "retry_on": ["lost", "timeout"],
        "retry_delay": 1.5,
        "retry_backoff": 3.0,
        "retry_max_delay": 600.0,
    }


def test_none_of_them_is_required() -> None:
    towerfile = parse_towerfile(BASE)
    assert (towerfile.schedule, towerfile.timezone, towerfile.retry) == (None, None, None)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[app.retry]\nmax_retries = -1\n", "[app.retry].max_retries must be between 0 and 100"),
        ("[app.retry]\nmax_retries = true\n", "[app.retry].max_retries must be an integer"),
        ("[app.retry]\nmax_retries = 1.5\n", "[app.retry].max_retries must be an integer"),
        ('[app.retry]\nretry_on = ["crash"]\n', "[app.retry].retry_on must list distinct"),
        ('[app.retry]\nretry_on = ["lost", "lost"]\n', "[app.retry].retry_on must list distinct"),
        ('[app.retry]\nretry_on = "lost"\n', "[app.retry].retry_on must list distinct"),
        ("[app.retry]\nretry_delay = -1\n", "[app.retry].retry_delay must be a number"),
        ("[app.retry]\nretry_delay = nan\n", "[app.retry].retry_delay must be a number"),
        ("[app.retry]\nretry_delay = inf\n", "[app.retry].retry_delay must be a number"),
        ('[app.retry]\nretry_delay = "30s"\n', "[app.retry].retry_delay must be a number"),
        ("[app.retry]\nretry_backoff = 0.5\n", "[app.retry].retry_backoff must be a number"),
        ("[app.retry]\nretry_max_delay = 1e9\n", "[app.retry].retry_max_delay must be a number"),
        ("[app.retry]\nretries = 3\n", "unknown key in [app.retry]: 'retries'"),
        ("[app]\nretry = 3\n", ""),
        ('schedule = ""\n', "[app].schedule must be a non-empty string"),
        ("schedule = 5\n", "[app].schedule must be a non-empty string"),
        (f'schedule = "{"*" * 201}"\n', "[app].schedule must be a non-empty string"),
        ("timezone = 1\n", "[app].timezone must be a non-empty string"),
    ],
)
def test_bad_values_name_their_key(extra: str, message: str) -> None:
    with pytest.raises(TowerfileError) as caught:
        parse_towerfile(BASE + extra)
    assert message in str(caught.value)


def test_secrets_are_read_and_default_to_none() -> None:
    assert parse_towerfile(BASE).secrets == ()
    towerfile = parse_towerfile(BASE + 'secrets = ["DB_URL", "API_KEY", "_X1"]\n')
    assert towerfile.secrets == ("DB_URL", "API_KEY", "_X1")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('secrets = "DB_URL"', "[app].secrets must be a list"),
        ('secrets = ["db_url"]', "must be 1-64 of A-Z 0-9 _"),
        ('secrets = ["1DB"]', "must be 1-64 of A-Z 0-9 _"),
        ('secrets = ["DB\\n"]', "must be 1-64 of A-Z 0-9 _"),
        ('secrets = ["MINITOWER_TOKEN"]', "must not start with MINITOWER_"),
        ('secrets = ["A", "A"]', "names a secret twice"),
        ("secrets = [" + ", ".join(f'"S{i}"' for i in range(101)) + "]", "more than 100"),
    ],
)
def test_bad_secrets_are_refused(line: str, message: str) -> None:
    with pytest.raises(TowerfileError, match=None) as caught:
        parse_towerfile(BASE + line + "\n")
    assert message in str(caught.value)
