"""The runner token, kept in the data directory (mode 0600) across restarts.

Registering again under the same name hands the runner a new token and revokes the old
one, so a restarted runner reuses its saved token and registers only when it has none,
when the saved one belongs to another server or name, or when the API answers 401.
"""

import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from minitower_runner.client import ApiClient

log = logging.getLogger("minitower.runner")

TOKEN_FILE = "runner-token.json"


class RegistrationUnavailable(Exception):
    """The runner has no token and no registration token to get one with."""


@dataclass(frozen=True)
class Identity:
    server_url: str
    name: str
    environment: str


def load_token(data_dir: Path, identity: Identity) -> str | None:
    try:
        saved = json.loads((data_dir / TOKEN_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict) or any(
        saved.get(key) != getattr(identity, key) for key in ("server_url", "name", "environment")
    ):
        return None
    token = saved.get("token")
    return token if isinstance(token, str) and token else None


def saved_team_id(data_dir: Path) -> int | None:
    """The team the saved token's runner is bound to; None for a shared runner, and for
    a file written before runners could be bound (they were all shared)."""
    try:
        saved = json.loads((data_dir / TOKEN_FILE).read_text())
    except (OSError, ValueError):
        return None
    team_id = saved.get("team_id") if isinstance(saved, dict) else None
    return team_id if isinstance(team_id, int) else None


def save_token(
    data_dir: Path, identity: Identity, runner_id: int, token: str, team_id: int | None = None
) -> None:
    """Written to a temporary file with mode 0600 and renamed: never readable by others,
    never half-written."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / TOKEN_FILE
    temporary = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    body = {
        "server_url": identity.server_url,
        "name": identity.name,
        "environment": identity.environment,
        "runner_id": runner_id,
        "token": token,
        "team_id": team_id,
    }
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(body, out)
        out.flush()
        os.fsync(out.fileno())
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)


class Credentials:
    """Keeps ``client.token`` valid: loads the saved token or registers for one."""

    def __init__(
        self,
        client: ApiClient,
        data_dir: Path,
        identity: Identity,
        registration_token: str | None,
        labels: dict[str, str],
    ) -> None:
        self._client = client
        self._data_dir = data_dir
        self._identity = identity
        self._registration_token = registration_token
        self._labels = labels
        self._lock = threading.Lock()
        # The team this runner is bound to (None: shared), known once ``ensure`` returns.
        self.team_id: int | None = None
        client.renew_token = self.renew

    def renew(self, refused: str | None) -> None:
        """Register again after ``refused`` got a 401, unless another thread already did:
        every registration revokes the token before it."""
        with self._lock:
            if self._client.token == refused:
                self._register()

    def ensure(self) -> None:
        token = load_token(self._data_dir, self._identity)
        if token is None:
            with self._lock:
                self._register()
        else:
            self._client.token = token
            self.team_id = saved_team_id(self._data_dir)

    def _register(self) -> None:
        if self._registration_token is None:
            raise RegistrationUnavailable(
                "the runner has no saved token and MINITOWER_RUNNER_REGISTRATION_TOKEN is not set"
            )
        registered = self._client.register(
            self._registration_token,
            self._identity.name,
            self._identity.environment,
            self._labels,
        )
        save_token(
            self._data_dir,
            self._identity,
            registered.runner_id,
            registered.token,
            registered.team_id,
        )
        self._client.token = registered.token
        self.team_id = registered.team_id
        log.info(
            "registered",
            extra={
                "runner": registered.name,
                "runner_id": registered.runner_id,
                "environment": registered.environment,
                "team_id": registered.team_id,
            },
        )
