"""Password hashing: scrypt, salted, and one hash's work on every path, so the time of an
answer does not tell an unknown team from a wrong password."""

import pytest

from minitower_api import passwords
from minitower_api.login_attempts import LoginAttempts, SlidingWindow


def test_a_hash_verifies_its_password_only() -> None:
    stored = passwords.hash_password("s3cret password")
    assert passwords.verify_password("s3cret password", stored)
    assert not passwords.verify_password("s3cret passwore", stored)
    assert not passwords.verify_password("", stored)
    assert passwords.hash_password("s3cret password") != stored


@pytest.mark.parametrize(
    "stored",
    [
        None,
        "",
        "bcrypt$x",
        "scrypt$16384$8$1$bad$bad",
        "scrypt$notanumber$8$1$AAAA$AAAA",
        # Parameters that would need gigabytes: refused by maxmem, not computed.
        "scrypt$1073741824$8$1$AAAA$AAAA",
    ],
)
def test_every_path_costs_exactly_one_derivation(
    stored: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = passwords._derive
    calls: list[int] = []

    def counting(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
        calls.append(n)
        return real(password, salt, n, r, p)

    monkeypatch.setattr(passwords, "_derive", counting)
    assert not passwords.verify_password("whatever", stored)
    # One full-cost derivation (a refused one is followed by one at the normal cost).
    assert calls[-1] == 2**14 and len(calls) in (1, 2)


def test_sliding_window_forgets_old_failures() -> None:
    now = [0.0]
    window = SlidingWindow(limit=2, window=10, clock=lambda: now[0])
    window.record_failure("a")
    window.record_failure("a")
    assert window.retry_after("a") == pytest.approx(10)
    assert window.retry_after("b") is None
    now[0] = 9.5
    assert window.retry_after("a") == pytest.approx(0.5)
    now[0] = 10.0
    assert window.retry_after("a") is None


def test_login_attempts_tables_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from minitower_api import login_attempts

    monkeypatch.setattr(login_attempts, "MAX_TRACKED_KEYS", 100)
    attempts = LoginAttempts(per_slug=1, per_address=1_000_000, window=60)
    for n in range(1000):
        attempts.failed(f"slug-{n}", "1.2.3.4")
    assert len(attempts._by_slug._failures) == 100
    assert attempts.check("slug-999", "5.6.7.8") is not None
    assert attempts.check("slug-0", "5.6.7.8") is None  # forgotten first
