"""deploy/runbooks/rotate-secrets-key.md, local processes: its steps run as written over
an env file written by install.md, against a real ``minitowerd`` restarted between them.
Every step keeps the API able to start, the secrets decrypt under the new key alone at
the end, and the old key alone no longer reads them."""

import os
import sys
from pathlib import Path

import httpx

from minitower_api.maintenance.secrets_key import startup_problem
from minitower_shared.secret_box import SecretBox
from tests.support.clients import RunnerClient, TeamClient, check
from tests.support.runbooks import local_env, read_env_file, run_step, serve_env_file
from tests.support.secrets import put_secret, run_secrets, secrets_archive

PATH = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
VALUES = {"DB_URL": "postgres://rotated@db/app", "API_KEY": "sk-runbook-rotation-1"}


def test_local_secrets_key_rotation(tmp_path: Path) -> None:
    local = local_env(tmp_path)
    env_file = Path(local["MINITOWER_LOCAL_ENV"])
    run_step("install", "local-write-env", env=local)
    run_step("install", "local-migrate", env=local)
    old_key = read_env_file(env_file)["MINITOWER_SECRETS_KEY"]
    SecretBox.from_setting(old_key)  # install.md's key is a valid one
    db = Path(read_env_file(env_file)["MINITOWER_DB_PATH"])

    api = serve_env_file(tmp_path / "api-1", env_file)
    try:
        with httpx.Client(base_url=api.url, timeout=45) as http:
            team = TeamClient.bootstrap(
                http, "ops", read_env_file(env_file)["MINITOWER_BOOTSTRAP_TOKEN"]
            )
            team.deploy("vault", secrets_archive())
            for name, value in VALUES.items():
                check(put_secret(team, name, value), 201)
    finally:
        api.stop()

    added = run_step("rotate-secrets-key", "local-add-new-key", env=local)
    assert added.stdout.strip() == "1"
    new_key = read_env_file(env_file)["MINITOWER_SECRETS_KEY"].split(",")[0]
    assert read_env_file(env_file)["MINITOWER_SECRETS_KEY"] == f"{new_key},{old_key}"
    api = serve_env_file(tmp_path / "api-2", env_file)  # starts: the old key still decrypts
    api.stop()

    rotated = run_step("rotate-secrets-key", "local-reencrypt", env=local)
    assert rotated.stdout.splitlines() == [
        "re-encrypted 2 secret(s) under the first key",
        "0 secret(s) were already under it",
    ]
    dropped = run_step("rotate-secrets-key", "local-drop-old-keys", env=local)
    assert dropped.stdout.strip() == "1"
    assert read_env_file(env_file)["MINITOWER_SECRETS_KEY"] == new_key
    assert startup_problem(db, SecretBox([old_key]), busy_timeout=5) is not None

    api = serve_env_file(tmp_path / "api-3", env_file)
    try:
        with httpx.Client(base_url=api.url, timeout=45) as http:
            team = TeamClient(http=http, token=team.token, team_id=team.team_id)
            verified = run_step(
                "rotate-secrets-key",
                "local-verify-rotation",
                env={**local, "MINITOWER_SERVER_URL": api.url, "MINITOWER_API_TOKEN": team.token},
            )
            assert "re-encrypted 0 secret(s)" in verified.stdout
            assert "DB_URL" in verified.stdout and "API_KEY" in verified.stdout
            assert VALUES["DB_URL"] not in verified.stdout
            runner = RunnerClient.register(
                http, "worker-1", read_env_file(env_file)["MINITOWER_RUNNER_REGISTRATION_TOKEN"]
            )
            team.create_run("vault")
            lease = runner.lease()
            assert lease is not None
            assert check(run_secrets(runner, lease), 200)["secrets"] == VALUES
    finally:
        api.stop()
