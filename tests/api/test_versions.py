"""App versions: Towerfile- and form-driven uploads, numbering, listing, and refusals that
leave nothing behind."""

import gzip
import hashlib
import json
import random
import tarfile
from typing import Any

import pytest
from fastapi.testclient import TestClient

from minitower_api.settings import ApiSettings
from tests.support.api_assertions import (
    Member,
    assert_timestamps,
    expect_error,
    make_tar_gz,
    offset_page,
    walk_pages,
)
from tests.support.archives import HELLO_TOWERFILE, make_archive
from tests.support.clients import TeamClient, check
from tests.support.inprocess_api import ClientFactory
from tests.support.object_stores import (
    assert_object_store_empty,
    object_store_entries,
    read_object,
    stored_entries,
)
from tests.support.tokens import BOOTSTRAP_TOKEN

VERSION_KEYS = {
    "version_id",
    "version_no",
    "entrypoint",
    "timeout_seconds",
    "params_schema",
    "import_paths",
    "secrets",
    "artifact_sha256",
    "artifact_size",
    "retry_policy",
    "created_at",
}

HELLO_SCHEMA = {
    "type": "object",
    "properties": {
        "greeting": {"type": "string", "description": "", "default": "hello"},
        "count": {"type": "integer", "description": "", "default": 1},
    },
}

ETL_TOWERFILE = """\
[app]
name = "etl"
script = "src/main.py"
import_paths = ["src", "lib"]
description = "Nightly load"

[app.timeout]
seconds = 600

[[parameters]]
name = "DAYS"
type = "integer"
description = "How far back"

[[parameters]]
name = "DRY_RUN"
type = "boolean"
default = false
"""

FORM_SCHEMA = {
    "type": "object",
    "properties": {"n": {"type": "integer", "minimum": 0, "default": 3}},
    "required": ["n"],
}


def upload(team: TeamClient, archive: bytes, app: str = "hello", **form: str) -> Any:
    return team.upload(app, archive, **form)


def assert_no_versions(team: TeamClient, app: str = "hello") -> None:
    assert check(team.get(f"/api/v1/apps/{app}/versions"), 200)["versions"] == []
    expect_error(team.get(f"/api/v1/apps/{app}/versions/1"), 404, "not_found")


# --- accepted uploads -------------------------------------------------------------------


def test_towerfile_driven_upload(
    team: TeamClient, hello_archive: bytes, settings: ApiSettings
) -> None:
    team.create_app("hello")
    version = check(upload(team, hello_archive), 201)
    assert set(version) == VERSION_KEYS
    assert version["version_no"] == 1
    assert version["entrypoint"] == "main.py"
    assert version["timeout_seconds"] == 3600
    assert version["params_schema"] == HELLO_SCHEMA
    assert version["import_paths"] == []
    assert version["artifact_sha256"] == hashlib.sha256(hello_archive).hexdigest()
    assert version["artifact_size"] == len(hello_archive)
    assert_timestamps(version, "created_at")
    assert check(team.get("/api/v1/apps/hello/versions/1"), 200) == version

    # Stored once, content-addressed, and the temporary area is empty again.
    sha = version["artifact_sha256"]
    key = f"artifacts/sha256/{sha[:2]}/{sha}.tar.gz"
    assert read_object(settings, key) == hello_archive
    assert object_store_entries(settings) == stored_entries(settings, key)


def test_towerfile_timeout_import_paths_and_required_parameters(team: TeamClient) -> None:
    team.create_app("etl")
    archive = make_archive({"Towerfile": ETL_TOWERFILE, "src/main.py": "print(1)\n"})
    version = check(upload(team, archive, app="etl"), 201)
    assert version["entrypoint"] == "src/main.py"
    assert version["timeout_seconds"] == 600
    assert version["import_paths"] == ["src", "lib"]
    assert version["params_schema"] == {
        "type": "object",
        "properties": {
            "DAYS": {"type": "integer", "description": "How far back"},
            "DRY_RUN": {"type": "boolean", "description": "", "default": False},
        },
        "required": ["DAYS"],
    }


def test_form_driven_upload_without_towerfile(team: TeamClient) -> None:
    team.create_app("hello")
    archive = make_archive({"run.py": "print(1)\n", "lib/util.py": ""})
    version = check(
        upload(
            team,
            archive,
            entrypoint="run.py",
            timeout_seconds="120",
            params_schema=json.dumps(FORM_SCHEMA),
        ),
        201,
    )
    assert version["entrypoint"] == "run.py"
    assert version["timeout_seconds"] == 120
    assert version["params_schema"] == FORM_SCHEMA
    assert version["import_paths"] == []


def test_form_without_schema_or_timeout_uses_defaults(team: TeamClient) -> None:
    team.create_app("hello")
    version = check(upload(team, make_archive({"run.py": ""}), entrypoint="./run.py"), 201)
    assert version["entrypoint"] == "run.py"
    assert version["timeout_seconds"] == 3600
    assert version["params_schema"] is None


def test_default_timeout_comes_from_the_settings(make_client: ClientFactory) -> None:
    client = make_client(default_run_timeout=90.0)
    team = TeamClient.bootstrap(client, "acme", BOOTSTRAP_TOKEN)
    team.create_app("hello")
    version = check(upload(team, make_archive({"run.py": ""}), entrypoint="run.py"), 201)
    assert version["timeout_seconds"] == 90


def test_form_fields_override_the_towerfile(team: TeamClient) -> None:
    team.create_app("etl")
    archive = make_archive(
        {"Towerfile": ETL_TOWERFILE, "src/main.py": "", "src/other.py": "print(2)\n"}
    )
    version = check(
        upload(
            team,
            archive,
            app="etl",
            entrypoint="src/other.py",
            timeout_seconds="30",
            params_schema=json.dumps(FORM_SCHEMA),
        ),
        201,
    )
    assert version["entrypoint"] == "src/other.py"
    assert version["timeout_seconds"] == 30
    assert version["params_schema"] == FORM_SCHEMA
    # What the form does not give still comes from the Towerfile.
    assert version["import_paths"] == ["src", "lib"]


def test_the_form_entrypoint_completes_a_towerfile_without_script(team: TeamClient) -> None:
    team.create_app("etl")
    towerfile = '[app]\nname = "etl"\n\n[[parameters]]\nname = "day"\ndefault = "today"\n'
    archive = make_archive({"Towerfile": towerfile, "job.py": ""})
    version = check(upload(team, archive, app="etl", entrypoint="job.py"), 201)
    assert version["entrypoint"] == "job.py"
    assert version["params_schema"]["properties"]["day"]["default"] == "today"
    # Without the form field there is no entrypoint at all.
    expect_error(upload(team, archive, app="etl"), 400, "invalid_request")


def test_versions_are_numbered_per_app_and_listed_newest_first(team: TeamClient) -> None:
    team.create_app("hello")
    team.create_app("other")
    archives = [make_archive({"main.py": f"print({i})\n"}) for i in range(3)]
    numbers = [
        check(upload(team, archive, entrypoint="main.py"), 201)["version_no"]
        for archive in archives
    ]
    assert numbers == [1, 2, 3]
    assert (
        check(upload(team, archives[0], app="other", entrypoint="main.py"), 201)["version_no"] == 1
    )

    listed = check(team.get("/api/v1/apps/hello/versions"), 200)
    assert set(listed) == {"versions", "next_cursor"}
    assert [v["version_no"] for v in listed["versions"]] == [3, 2, 1]
    assert [v["artifact_sha256"] for v in listed["versions"]] == [
        hashlib.sha256(a).hexdigest() for a in reversed(archives)
    ]
    assert listed["next_cursor"] is None
    for number in (1, 2, 3):
        assert check(team.get(f"/api/v1/apps/hello/versions/{number}"), 200)["version_no"] == number


def test_version_list_is_paginated(team: TeamClient) -> None:
    team.create_app("hello")
    for i in range(5):
        check(upload(team, make_archive({"main.py": str(i)}), entrypoint="main.py"), 201)
    path = "/api/v1/apps/hello/versions"
    assert walk_pages(team, path, "versions", "version_no", 2) == [[5, 4], [3, 2], [1]]
    assert offset_page(team, path, "versions", "version_no", limit=2, offset=1) == [4, 3]


@pytest.mark.parametrize(
    "params", [{"limit": 0}, {"limit": 201}, {"limit": "x"}, {"cursor": "x"}, {"cursor": "-1"}]
)
def test_invalid_version_paging_is_400(team: TeamClient, params: dict[str, Any]) -> None:
    team.create_app("hello")
    expect_error(team.get("/api/v1/apps/hello/versions", params=params), 400, "invalid_request")


def test_the_same_archive_in_two_apps_is_stored_once(
    team: TeamClient, hello_archive: bytes, settings: ApiSettings
) -> None:
    first = team.deploy("hello", hello_archive)
    second = team.deploy("hello-two", hello_archive)
    assert first["artifact_sha256"] == second["artifact_sha256"]
    stored = [p for p in object_store_entries(settings) if p.endswith(".tar.gz")]
    assert len(stored) == 1


def test_unknown_version_is_404(team: TeamClient, deployed: dict[str, Any]) -> None:
    expect_error(team.get("/api/v1/apps/hello/versions/2"), 404, "not_found")
    # Version numbers start at 1: anything else is not a version number at all.
    expect_error(team.get("/api/v1/apps/hello/versions/0"), 400, "invalid_request")
    expect_error(team.get("/api/v1/apps/hello/versions/one"), 400, "invalid_request")


def test_unknown_app_is_404(team: TeamClient, hello_archive: bytes, settings: ApiSettings) -> None:
    expect_error(upload(team, hello_archive, app="nope"), 404, "not_found")
    expect_error(team.get("/api/v1/apps/nope/versions"), 404, "not_found")
    expect_error(team.get("/api/v1/apps/nope/versions/1"), 404, "not_found")
    assert_object_store_empty(settings)


def test_another_teams_versions_are_404(
    team: TeamClient, other_team: TeamClient, hello_archive: bytes, settings: ApiSettings
) -> None:
    other_team.deploy("secret", hello_archive)
    stored_before = object_store_entries(settings)
    expect_error(upload(team, hello_archive, app="secret"), 404, "not_found")
    expect_error(team.get("/api/v1/apps/secret/versions"), 404, "not_found")
    expect_error(team.get("/api/v1/apps/secret/versions/1"), 404, "not_found")
    assert object_store_entries(settings) == stored_before
    assert len(check(other_team.get("/api/v1/apps/secret/versions"), 200)["versions"]) == 1


def test_versions_need_a_team_token(client: TestClient, deployed: dict[str, Any]) -> None:
    expect_error(client.get("/api/v1/apps/hello/versions"), 401, "unauthorized")
    expect_error(client.get("/api/v1/apps/hello/versions/1"), 401, "unauthorized")
    response = client.post(
        "/api/v1/apps/hello/versions",
        files={"artifact": ("a.tar.gz", make_archive({"main.py": ""}), "application/gzip")},
        data={"entrypoint": "main.py"},
    )
    expect_error(response, 401, "unauthorized")


def test_versions_are_immutable(team: TeamClient, deployed: dict[str, Any]) -> None:
    for method in ("PUT", "PATCH", "DELETE"):
        response = team.http.request(
            method, "/api/v1/apps/hello/versions/1", headers=team.headers, json={}
        )
        assert response.status_code == 405, response.text
        assert response.json()["error"]["code"] == "invalid_request"
    assert check(team.get("/api/v1/apps/hello/versions/1"), 200) == deployed


# --- refused uploads: 4xx, and nothing left behind ----------------------------------------

MAIN = Member("main.py", b"print('hi')\n")
BIG_SCHEMA_DEPTH = 5000


def _deep_schema(depth: int) -> str:
    return '{"properties": {"a": ' + '{"items": ' * depth + "{}" + "}" * depth + "}}"


UNSAFE_ARCHIVES: dict[str, bytes] = {
    "dotdot": make_tar_gz(MAIN, Member("../evil.py", b"x")),
    "nested-dotdot": make_tar_gz(MAIN, Member("pkg/../../evil.py", b"x")),
    "absolute-path": make_tar_gz(MAIN, Member("/etc/evil.py", b"x")),
    "symlink-outside": make_tar_gz(
        MAIN, Member("link", kind=tarfile.SYMTYPE, linkname="../../etc/passwd")
    ),
    "symlink-absolute": make_tar_gz(
        MAIN, Member("link", kind=tarfile.SYMTYPE, linkname="/etc/passwd")
    ),
    "symlink-through-symlink": make_tar_gz(
        MAIN,
        Member("here", kind=tarfile.SYMTYPE, linkname="."),
        Member("up", kind=tarfile.SYMTYPE, linkname="here/.."),
    ),
    "file-under-symlink": make_tar_gz(
        MAIN,
        Member("dir", kind=tarfile.SYMTYPE, linkname="."),
        Member("dir/file.py", b"x"),
    ),
    "hardlink-outside": make_tar_gz(
        MAIN, Member("hard", kind=tarfile.LNKTYPE, linkname="../outside")
    ),
    "char-device": make_tar_gz(MAIN, Member("null", kind=tarfile.CHRTYPE)),
    "block-device": make_tar_gz(MAIN, Member("sda", kind=tarfile.BLKTYPE)),
    "fifo": make_tar_gz(MAIN, Member("pipe", kind=tarfile.FIFOTYPE)),
    "gzip-not-tar": gzip.compress(b"this is not a tar archive\n" * 100),
    "not-gzip": b"PK\x03\x04 this is a zip file, or pretends to be\n" * 10,
    "plain-tar": gzip.decompress(make_tar_gz(MAIN)),
    "truncated-gzip": make_tar_gz(MAIN, Member("pad.bin", random.Random(1).randbytes(4096)))[:-100],
    "empty-file": b"",
}


@pytest.mark.parametrize("archive", UNSAFE_ARCHIVES.values(), ids=UNSAFE_ARCHIVES.keys())
def test_unsafe_or_malformed_archive_is_refused_and_leaves_nothing(
    team: TeamClient, settings: ApiSettings, archive: bytes
) -> None:
    team.create_app("hello")
    expect_error(upload(team, archive, entrypoint="main.py"), 400, "invalid_request")
    assert_object_store_empty(settings)
    assert_no_versions(team)


BAD_MANIFESTS: dict[str, tuple[dict[str, str | bytes], dict[str, str]]] = {
    "towerfile-script-missing": (
        {"Towerfile": HELLO_TOWERFILE.replace('"main.py"', '"nope.py"'), "main.py": ""},
        {},
    ),
    "form-entrypoint-missing": ({"main.py": ""}, {"entrypoint": "nope.py"}),
    "entrypoint-is-a-directory": ({"pkg/main.py": ""}, {"entrypoint": "pkg"}),
    "entrypoint-outside": ({"main.py": ""}, {"entrypoint": "../main.py"}),
    "no-towerfile-no-entrypoint": ({"main.py": ""}, {}),
    "towerfile-not-toml": ({"Towerfile": "[app\nname=", "main.py": ""}, {}),
    "towerfile-without-app": ({"Towerfile": "[[parameters]]\nname='x'\n", "main.py": ""}, {}),
    "towerfile-unknown-key": (
        {"Towerfile": HELLO_TOWERFILE + "\n[extra]\nx = 1\n", "main.py": ""},
        {},
    ),
    "params-schema-not-json": ({"main.py": ""}, {"entrypoint": "main.py", "params_schema": "{"}),
    "params-schema-not-object": (
        {"main.py": ""},
        {"entrypoint": "main.py", "params_schema": "[1, 2]"},
    ),
    "params-schema-invalid": (
        {"main.py": ""},
        {"entrypoint": "main.py", "params_schema": '{"type": 5}'},
    ),
    "params-schema-bad-regex": (
        {"main.py": ""},
        {"entrypoint": "main.py", "params_schema": '{"properties": {"a": {"pattern": "(("}}}'},
    ),
    "params-schema-not-for-an-object": (
        {"main.py": ""},
        {"entrypoint": "main.py", "params_schema": '{"type": "string"}'},
    ),
    "params-schema-nan": (
        {"main.py": ""},
        {"entrypoint": "main.py", "params_schema": '{"properties": {"a": {"default": NaN}}}'},
    ),
    "params-schema-deeply-nested": (
        {"main.py": ""},
        {"entrypoint": "main.py", "params_schema": _deep_schema(300)},
    ),
    "params-schema-nested-past-the-parser": (
        {"main.py": ""},
        {"entrypoint": "main.py", "params_schema": "[" * BIG_SCHEMA_DEPTH},
    ),
    "timeout-zero": ({"main.py": ""}, {"entrypoint": "main.py", "timeout_seconds": "0"}),
    "timeout-negative": ({"main.py": ""}, {"entrypoint": "main.py", "timeout_seconds": "-5"}),
    "timeout-huge": ({"main.py": ""}, {"entrypoint": "main.py", "timeout_seconds": "1" + "0" * 30}),
    "timeout-not-a-number": ({"main.py": ""}, {"entrypoint": "main.py", "timeout_seconds": "x"}),
    "timeout-fraction": ({"main.py": ""}, {"entrypoint": "main.py", "timeout_seconds": "1.5"}),
}


@pytest.mark.parametrize(("files", "form"), BAD_MANIFESTS.values(), ids=BAD_MANIFESTS.keys())
def test_bad_manifest_is_400_and_leaves_nothing(
    team: TeamClient, settings: ApiSettings, files: dict[str, str | bytes], form: dict[str, str]
) -> None:
    team.create_app("hello")
    expect_error(upload(team, make_archive(files), **form), 400, "invalid_request")
    assert_object_store_empty(settings)
    assert_no_versions(team)


def test_upload_without_an_artifact_is_400(team: TeamClient, settings: ApiSettings) -> None:
    team.create_app("hello")
    response = team.post("/api/v1/apps/hello/versions", data={"entrypoint": "main.py"})
    expect_error(response, 400, "invalid_request")
    response = team.post(
        "/api/v1/apps/hello/versions", data={"artifact": "not a file", "entrypoint": "main.py"}
    )
    expect_error(response, 400, "invalid_request")
    response = team.post("/api/v1/apps/hello/versions", json={"entrypoint": "main.py"})
    expect_error(response, 400, "invalid_request")
    assert_object_store_empty(settings)
    assert_no_versions(team)


def _incompressible_archive(size: int) -> bytes:
    return make_archive({"main.py": "", "blob.bin": random.Random(size).randbytes(size)})


@pytest.mark.parametrize(
    "payload_bytes",
    [4_000, 1_200_000],
    ids=["over-the-artifact-limit", "over-the-request-limit-too"],
)
def test_too_big_artifact_is_413_and_leaves_nothing(
    make_client: ClientFactory, settings: ApiSettings, payload_bytes: int
) -> None:
    client = make_client(max_artifact_bytes=2_000)
    team = TeamClient.bootstrap(client, "acme", BOOTSTRAP_TOKEN)
    team.create_app("hello")
    archive = _incompressible_archive(payload_bytes)
    assert len(archive) > 2_000
    expect_error(upload(team, archive, entrypoint="main.py"), 413, "payload_too_large")
    assert_object_store_empty(settings)
    assert_no_versions(team)

    small = make_archive({"main.py": ""})
    assert len(small) <= 2_000
    assert check(upload(team, small, entrypoint="main.py"), 201)["version_no"] == 1


def test_an_artifact_of_exactly_the_limit_is_accepted(make_client: ClientFactory) -> None:
    archive = _incompressible_archive(3_000)
    client = make_client(max_artifact_bytes=len(archive))
    team = TeamClient.bootstrap(client, "acme", BOOTSTRAP_TOKEN)
    team.create_app("hello")
    check(upload(team, archive, entrypoint="main.py"), 201)


def test_unpacked_size_limit_is_enforced(make_client: ClientFactory, settings: ApiSettings) -> None:
    client = make_client(max_unpacked_bytes=10_000)
    team = TeamClient.bootstrap(client, "acme", BOOTSTRAP_TOKEN)
    team.create_app("hello")
    bomb = make_archive({"main.py": "", "zeros.bin": b"\0" * 100_000})
    expect_error(upload(team, bomb, entrypoint="main.py"), 400, "invalid_request")
    assert_object_store_empty(settings)
    assert_no_versions(team)
