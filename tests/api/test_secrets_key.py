"""MINITOWER_SECRETS_KEY (and a writable MINITOWER_OBJECTS_DIR) at the API's start, and
``minitowerd generate-secrets-key`` / ``rotate-secrets-key``: refusals are one line and
exit 2 like other configuration errors."""

import base64
import subprocess
from pathlib import Path

from fastapi.testclient import TestClient
from pydantic import SecretStr

from minitower_api.maintenance.secrets_key import startup_problem
from minitower_shared.secret_box import SecretBox
from tests.support.clients import RunnerClient, TeamClient, check
from tests.support.databases import Database, database_env
from tests.support.inprocess_api import ClientFactory
from tests.support.maintenance import minitowerd
from tests.support.secrets import KEY, OTHER_KEY, put_secret, run_secrets, secrets_archive
from tests.support.tokens import BOOTSTRAP_TOKEN, REGISTRATION_TOKEN

VALUES = {"DB_URL": "postgres://rotate-me@db/app", "API_KEY": "sk-rotate-0123456789"}


def _seed(make_client: ClientFactory, key: str) -> TeamClient:
    team = TeamClient.bootstrap(make_client(secrets_key=SecretStr(key)), "acme", BOOTSTRAP_TOKEN)
    team.deploy("vault", secrets_archive())
    for name, value in VALUES.items():
        check(put_secret(team, name, value), 201)
    return team


def _serve(database: Database, tmp_path: Path, key: str | None) -> subprocess.CompletedProcess[str]:
    env = {**database_env(database), "MINITOWER_LISTEN_ADDR": "127.0.0.1:9"}
    env["MINITOWER_SECRETS_KEY"] = key or ""
    if key is None:
        env.pop("MINITOWER_SECRETS_KEY")
    return minitowerd(env=env, cwd=tmp_path)


def _refused(done: subprocess.CompletedProcess[str], expected: str) -> None:
    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("minitowerd: configuration error: MINITOWER_SECRETS_KEY: "), line
    assert expected in line, line


def test_generate_prints_a_fresh_32_byte_key(tmp_path: Path) -> None:
    first = minitowerd("generate-secrets-key", env={}, cwd=tmp_path)
    second = minitowerd("generate-secrets-key", env={}, cwd=tmp_path)
    assert first.returncode == 0, first
    key = first.stdout.strip()
    assert len(base64.urlsafe_b64decode(key)) == 32
    assert key != second.stdout.strip()
    SecretBox.from_setting(key)


def test_the_api_refuses_to_start_with_secrets_and_no_key(
    make_client: ClientFactory, database: Database, tmp_path: Path
) -> None:
    _seed(make_client, KEY)
    _refused(_serve(database, tmp_path, None), "the database holds secrets")


def test_the_api_refuses_to_start_with_a_key_that_does_not_decrypt(
    make_client: ClientFactory, database: Database, tmp_path: Path
) -> None:
    _seed(make_client, KEY)
    done = _serve(database, tmp_path, OTHER_KEY)
    _refused(done, "does not decrypt the secrets in the database")
    assert KEY not in done.stderr and OTHER_KEY not in done.stderr


def test_a_malformed_key_is_a_configuration_error(database: Database, tmp_path: Path) -> None:
    done = _serve(database, tmp_path, f"{KEY},not-a-key")
    assert done.returncode == 2, done
    assert "MINITOWER_SECRETS_KEY: key 2 is not 32 bytes" in done.stderr
    assert KEY not in done.stderr and "not-a-key" not in done.stderr


def test_no_secrets_and_no_key_is_fine(client: TestClient, database: Database) -> None:
    assert startup_problem(database, None, busy_timeout=5) is None
    assert startup_problem(database, SecretBox([KEY]), busy_timeout=5) is None


def test_rotation_re_encrypts_every_row_once(
    make_client: ClientFactory, database: Database, tmp_path: Path
) -> None:
    team = _seed(make_client, OTHER_KEY)
    env = {**database_env(database), "MINITOWER_SECRETS_KEY": f"{KEY},{OTHER_KEY}"}
    done = minitowerd("rotate-secrets-key", env=env, cwd=tmp_path)
    assert done.returncode == 0, done
    assert done.stdout.splitlines() == [
        "re-encrypted 2 secret(s) under the first key",
        "0 secret(s) were already under it",
    ]
    again = minitowerd("rotate-secrets-key", env=env, cwd=tmp_path)
    assert again.stdout.splitlines()[0] == "re-encrypted 0 secret(s) under the first key"
    # The old key alone no longer reads them; the new one alone does.
    _refused(_serve(database, tmp_path, OTHER_KEY), "does not decrypt")
    assert startup_problem(database, SecretBox([KEY]), busy_timeout=5) is None
    api = make_client(secrets_key=SecretStr(KEY))
    runner = RunnerClient.register(api, "runner-1", REGISTRATION_TOKEN)
    team.create_run("vault")
    lease = runner.lease()
    assert lease is not None
    assert check(run_secrets(runner, lease), 200)["secrets"] == VALUES


def test_rotation_without_a_key_or_with_a_wrong_one_changes_nothing(
    make_client: ClientFactory, database: Database, tmp_path: Path
) -> None:
    _seed(make_client, KEY)
    before = startup_problem(database, SecretBox([KEY]), busy_timeout=5)
    none = minitowerd("rotate-secrets-key", env=database_env(database), cwd=tmp_path)
    assert none.returncode == 1 and "MINITOWER_SECRETS_KEY is not set" in none.stderr
    wrong = minitowerd(
        "rotate-secrets-key",
        env={**database_env(database), "MINITOWER_SECRETS_KEY": OTHER_KEY},
        cwd=tmp_path,
    )
    assert wrong.returncode == 1, wrong
    assert "does not decrypt" in wrong.stderr and "nothing was changed" in wrong.stderr
    assert before is None and startup_problem(database, SecretBox([KEY]), busy_timeout=5) is None


def test_the_api_refuses_an_objects_dir_it_cannot_write_in_one_line(
    database: Database, tmp_path: Path
) -> None:
    """Uploads are received in MINITOWER_OBJECTS_DIR/tmp whatever the store: a folder the
    service cannot write is a configuration error at start, not a traceback (or a 500 at
    the first upload)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = {
        **database_env(database),
        "MINITOWER_LISTEN_ADDR": "127.0.0.1:9",
        "MINITOWER_OBJECTS_DIR": str(blocker / "objects"),
    }
    done = minitowerd(env=env, cwd=tmp_path)
    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "minitowerd: configuration error: MINITOWER_OBJECTS_DIR: cannot write to "
        f"{blocker / 'objects' / 'tmp'}: Not a directory"
    )
