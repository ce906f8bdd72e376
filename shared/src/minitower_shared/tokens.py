"""Secrets: random tokens shown once, stored only as SHA-256 hashes."""

import hashlib
import hmac
import secrets

TEAM_TOKEN_PREFIX = "mtk_"
RUNNER_TOKEN_PREFIX = "mtr_"
# A team's runner registration token: registers runners bound to that team.
RUNNER_REGISTRATION_TOKEN_PREFIX = "mtg_"
LEASE_TOKEN_PREFIX = "mtl_"


def new_token(prefix: str) -> str:
    """A token with 256 bits of entropy."""
    return prefix + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """Tokens are high-entropy, so an unsalted fast hash is enough to make a leaked
    database useless to an attacker while keeping lookups a single index probe."""
    return hashlib.sha256(token.encode()).hexdigest()


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison for operator secrets configured in the environment."""
    return hmac.compare_digest(given.encode(), expected.encode())
