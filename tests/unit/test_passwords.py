"""Password hashing: scrypt, salted, and one hash's work on every path, so the time of an
answer does not tell an unknown team from a wrong password."""

import pytest

from minitower_api import passwords


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
