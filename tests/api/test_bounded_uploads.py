"""Uploads and run input at bounded cost, in process: hostile Towerfiles, patterns and
tar headers are 400s with their reason, and no upload leaves a file behind."""

from __future__ import annotations

import json
import os
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from minitower_api.main import create_app
from minitower_api.routers import versions
from minitower_api.settings import ApiSettings
from tests.support import hostile
from tests.support.api_assertions import expect_error
from tests.support.archives import make_archive
from tests.support.clients import TeamClient, check
from tests.support.inprocess_api import ClientFactory
from tests.support.object_stores import assert_object_store_empty
from tests.support.tokens import BOOTSTRAP_TOKEN


@pytest.fixture
def acme(team: TeamClient) -> TeamClient:
    team.create_app("hello")
    return team


def upload(team: TeamClient, archive: bytes, **form: str) -> Any:
    return team.upload("hello", archive, **form)


@pytest.mark.parametrize(
    ("towerfile", "reason"),
    [
        ("a." * 30000 + "b = 1", "a dotted key has more than 8 parts"),
        ("a = " + "[" * 5000 + "]" * 5000, "nested more than 16 levels deep"),
        ("[app]\n" + "#" * 70_000, "Towerfile is larger than 65536 bytes"),
    ],
    ids=["dotted-key", "5000-deep", "over-64-kib"],
)
def test_a_hostile_towerfile_is_a_400_and_leaves_nothing(
    acme: TeamClient, settings: ApiSettings, towerfile: str, reason: str
) -> None:
    archive = make_archive({"Towerfile": towerfile, "main.py": ""})
    started = time.monotonic()
    error = expect_error(upload(acme, archive), 400, "invalid_request")
    assert time.monotonic() - started < 1
    assert reason in error["message"]
    assert_object_store_empty(settings)


def test_the_towerfile_limit_is_a_setting(make_client: ClientFactory) -> None:
    client = make_client(max_towerfile_bytes=1024)
    team = TeamClient.bootstrap(client, "acme", BOOTSTRAP_TOKEN)
    team.create_app("hello")
    towerfile = '[app]\nname = "hello"\nscript = "main.py"\n' + "#" * 1000
    archive = make_archive({"Towerfile": towerfile, "main.py": ""})
    error = expect_error(upload(team, archive), 400, "invalid_request")
    assert "Towerfile is larger than 1024 bytes" in error["message"]


def test_the_towerfile_limit_cannot_exceed_what_runners_accept(settings: ApiSettings) -> None:
    with pytest.raises(ValueError, match="less than or equal to 65536"):
        ApiSettings(**{**settings.model_dump(), "max_towerfile_bytes": 1 << 20})


@pytest.mark.parametrize("kind", [tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME])
def test_an_oversized_tar_header_is_a_400_and_leaves_nothing(
    acme: TeamClient, settings: ApiSettings, tmp_path: Path, kind: bytes
) -> None:
    bomb = hostile.header_bomb(tmp_path / "bomb.tar.gz", kind, 10 * hostile.MiB)
    error = expect_error(
        upload(acme, bomb.read_bytes(), entrypoint="main.py"), 400, "invalid_request"
    )
    assert "more than the limit of 65536" in error["message"]
    assert_object_store_empty(settings)


def test_a_pattern_re2_cannot_run_is_refused_at_upload(acme: TeamClient) -> None:
    schema = {"type": "object", "properties": {"s": {"pattern": "(a)\\1"}}}
    response = upload(
        acme, make_archive({"main.py": ""}), entrypoint="main.py", params_schema=json.dumps(schema)
    )
    error = expect_error(response, 400, "invalid_request")
    assert "patterns run on RE2" in error["message"]


def test_a_backtracking_pattern_answers_at_once(acme: TeamClient) -> None:
    schema = {"type": "object", "properties": {"s": {"type": "string", "pattern": "^(a+)+$"}}}
    check(
        upload(
            acme,
            make_archive({"main.py": ""}),
            entrypoint="main.py",
            params_schema=json.dumps(schema),
        ),
        201,
    )
    started = time.monotonic()
    response = acme.post("/api/v1/apps/hello/runs", json={"input": {"s": "a" * 28 + "!"}})
    expect_error(response, 400, "invalid_request")
    assert time.monotonic() - started < 1


def test_run_input_sizes_are_capped(make_client: ClientFactory) -> None:
    client = make_client(max_input_items=100, max_input_depth=4)
    team = TeamClient.bootstrap(client, "acme", BOOTSTRAP_TOKEN)
    team.create_app("hello")
    check(upload(team, make_archive({"main.py": ""}), entrypoint="main.py"), 201)
    runs = "/api/v1/apps/hello/runs"
    check(team.post(runs, json={"input": {"rows": list(range(100))}}), 201)
    too_long = {"input": {"rows": list(range(101))}}
    error = expect_error(team.post(runs, json=too_long), 400, "invalid_request")
    assert "array has more than 100 items" in error["message"]
    check(team.post(runs, json={"input": {"a": {"b": {"c": {"d": 1}}}}}), 201)  # 4 levels
    too_deep = {"input": {"a": {"b": {"c": {"d": {"e": 1}}}}}}
    error = expect_error(team.post(runs, json=too_deep), 400, "invalid_request")
    assert "nested more than 4 levels" in error["message"]


def test_an_unexpected_error_after_spooling_leaves_no_temporary_file(
    acme: TeamClient, settings: ApiSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*_args: Any, **_kwargs: Any) -> Any:
        raise RecursionError("as the Towerfile parser once did")

    monkeypatch.setattr(versions, "parse_towerfile", explode)
    archive = make_archive({"Towerfile": "[app]\n", "main.py": ""})
    expect_error(upload(acme, archive), 500, "internal")
    assert_object_store_empty(settings)

    monkeypatch.setattr(versions, "inspect_archive", explode)
    expect_error(upload(acme, archive), 500, "internal")
    assert_object_store_empty(settings)


def test_stale_upload_files_are_swept_at_start_up(settings: ApiSettings) -> None:
    temporary = settings.objects_dir / "tmp"
    temporary.mkdir(parents=True, exist_ok=True)
    stale, fresh = temporary / "dead.part", temporary / "receiving.part"
    stale.write_bytes(b"x" * 1000)
    fresh.write_bytes(b"y")
    hour_ago = time.time() - 3601
    os.utime(stale, (hour_ago, hour_ago))
    with TestClient(create_app(settings)) as client:
        assert client.get("/health").status_code == 200
    assert not stale.exists()
    assert fresh.exists(), "an upload being received right now must be left alone"


def test_a_chunked_upload_over_the_limit_is_cut_off_and_leaves_nothing(
    make_client: ClientFactory, settings: ApiSettings
) -> None:
    """No Content-Length to refuse up front: the read that crosses the limit answers 413
    (the limit is the artifact's plus 1 MiB of form), and nothing of it is kept."""
    client = make_client(max_artifact_bytes=2_000)
    team = TeamClient.bootstrap(client, "acme", BOOTSTRAP_TOKEN)
    team.create_app("hello")

    def body() -> Iterator[bytes]:
        yield (
            b'--b\r\nContent-Disposition: form-data; name="artifact"; filename="a.tar.gz"\r\n'
            b"Content-Type: application/gzip\r\n\r\n"
        )
        for _ in range(64):  # 4 MiB, well past the limit
            yield b"x" * 65536
        yield b"\r\n--b--\r\n"

    response = team.post(
        "/api/v1/apps/hello/versions",
        content=body(),
        headers={"Content-Type": "multipart/form-data; boundary=b", "Transfer-Encoding": "chunked"},
    )
    error = expect_error(response, 413, "payload_too_large")
    assert str(1024 * 1024 + 2_000) in error["message"]
    assert_object_store_empty(settings)


def test_a_params_schema_over_64_kib_is_refused_before_parsing(
    acme: TeamClient, settings: ApiSettings
) -> None:
    schema = {"type": "object", "description": "x" * 70_000}
    response = upload(
        acme, make_archive({"main.py": ""}), entrypoint="main.py", params_schema=json.dumps(schema)
    )
    error = expect_error(response, 400, "invalid_request")
    assert error["message"] == "params_schema is larger than the limit of 65536 bytes"
    assert_object_store_empty(settings)
