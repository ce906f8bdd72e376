"""Encryption of secrets at rest: Fernet (AES-128-CBC + HMAC-SHA256, authenticated) under
MINITOWER_SECRETS_KEY, through MultiFernet so that a list of keys rotates for free: the
first key encrypts, every key decrypts.

Each ciphertext is bound to its row: the plaintext is the row's (team, environment, name)
followed by the value, and decryption checks that prefix. Fernet authenticates the whole
plaintext, so a ciphertext copied into another row (another team, environment or name)
fails to decrypt there instead of handing that row's reader someone else's value.
"""

import base64
import binascii
import re
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

# What the name must look like (and the reserved prefix the runner's own variables use).
SECRET_NAME_PATTERN = r"^[A-Z_][A-Z0-9_]{0,63}$"
RESERVED_PREFIX = "MINITOWER_"
# Bytes of UTF-8.
MAX_SECRET_VALUE_BYTES = 64 * 1024

NOT_CONFIGURED = (
    "secrets are not configured: set MINITOWER_SECRETS_KEY (minitowerd generate-secrets-key)"
)


_NAME = re.compile(SECRET_NAME_PATTERN)


def secret_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a secret, or None when it can."""
    if not _NAME.fullmatch(name):
        return f"secret name {name[:80]!r} must be 1-64 of A-Z 0-9 _ and not start with a digit"
    if name.startswith(RESERVED_PREFIX):
        return f"secret name {name!r} must not start with {RESERVED_PREFIX} (reserved)"
    return None


class SecretKeyError(ValueError):
    """MINITOWER_SECRETS_KEY is not a comma-separated list of Fernet keys."""


class UndecryptableSecret(Exception):
    """No configured key decrypts the row (a wrong key), or the row's ciphertext belongs
    to another row."""


@dataclass(frozen=True)
class SecretRef:
    team_id: int
    environment: str
    name: str

    def binding(self) -> bytes:
        # NUL cannot occur in any of the three (ids are digits; names and environments
        # follow their patterns), so the prefix is unambiguous.
        return f"minitower-secret\0{self.team_id}\0{self.environment}\0{self.name}\0".encode()


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


def parse_keys(setting: str) -> list[str]:
    """The keys of a MINITOWER_SECRETS_KEY value; raises SecretKeyError naming which entry
    is wrong (by position, never echoing it)."""
    keys = [part.strip() for part in setting.split(",") if part.strip()]
    if not keys:
        raise SecretKeyError("is empty; generate a key with `minitowerd generate-secrets-key`")
    for position, key in enumerate(keys, start=1):
        try:
            raw = base64.urlsafe_b64decode(key.encode("ascii"))
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raw = b""
        if len(raw) != 32:
            raise SecretKeyError(
                f"key {position} is not 32 bytes of URL-safe base64 "
                "(generate one with `minitowerd generate-secrets-key`)"
            )
    return keys


class SecretBox:
    def __init__(self, keys: list[str]) -> None:
        self._fernet = MultiFernet([Fernet(key.encode("ascii")) for key in keys])
        self._primary = Fernet(keys[0].encode("ascii"))

    @classmethod
    def from_setting(cls, setting: str) -> "SecretBox":
        return cls(parse_keys(setting))

    def encrypt(self, ref: SecretRef, value: str) -> str:
        return self._fernet.encrypt(ref.binding() + value.encode("utf-8")).decode("ascii")

    def decrypt(self, ref: SecretRef, ciphertext: str) -> str:
        try:
            plain = self._fernet.decrypt(ciphertext.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            raise UndecryptableSecret(
                f"secret {ref.name} of environment {ref.environment!r} does not decrypt "
                "with MINITOWER_SECRETS_KEY"
            ) from None
        prefix = ref.binding()
        if not plain.startswith(prefix):
            raise UndecryptableSecret(
                f"secret {ref.name} of environment {ref.environment!r} holds a ciphertext "
                "made for another secret"
            )
        return plain[len(prefix) :].decode("utf-8")

    def is_current(self, ciphertext: str) -> bool:
        """Whether the first key decrypts it (rotation leaves those rows alone)."""
        try:
            self._primary.decrypt(ciphertext.encode("ascii"))
        except InvalidToken:
            return False
        return True

    def rotate(self, ciphertext: str) -> str:
        """Re-encrypted under the first key; the bound plaintext is kept as it is."""
        return self._fernet.rotate(ciphertext.encode("ascii")).decode("ascii")
