"""Team passwords: salted scrypt hashes, checked in constant time.

scrypt comes with Python's standard library (``hashlib.scrypt``, OpenSSL's), so the API
needs no new dependency, and it is memory-hard: with n=2**14, r=8 each guess costs 16 MiB
and some 50 ms, on a GPU as on the server. The parameters travel inside each hash, so
they can be raised later without invalidating stored passwords.
"""

import base64
import hashlib
import hmac
import secrets

_N, _R, _P = 2**14, 8, 1
_SALT_BYTES = 16
_KEY_BYTES = 32
# Room for the parameters above; a hash naming costlier ones is refused, not computed.
_MAX_MEMORY = 64 * 1024 * 1024


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAX_MEMORY, dklen=_KEY_BYTES
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$key`` (base64 salt and key)."""
    salt = secrets.token_bytes(_SALT_BYTES)
    key = _derive(password, salt, _N, _R, _P)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(key)}"


# Checked against when the team does not exist or has no password, so that an unknown
# slug costs the same time as a wrong password and the answer's timing tells nothing.
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


def verify_password(password: str, stored: str | None) -> bool:
    """Whether ``password`` matches ``stored``; always spends one hash's time, also when
    ``stored`` is None or unreadable (then the answer is False)."""
    try:
        scheme, n, r, p, salt, key = (stored or _DUMMY_HASH).split("$")
        if scheme != "scrypt":
            raise ValueError(scheme)
        expected = base64.b64decode(key)
        derived = _derive(password, base64.b64decode(salt), int(n), int(r), int(p))
    except ValueError:
        _derive(password, b"0" * _SALT_BYTES, _N, _R, _P)
        return False
    return stored is not None and hmac.compare_digest(derived, expected)
