"""Assertions and builders shared by the API tests."""

import io
import re
import tarfile
from dataclasses import dataclass
from typing import Any

import httpx

from tests.support.clients import Lease, RunnerClient, TeamClient, check

JSON = {"Content-Type": "application/json"}
# The contract's timestamps: RFC 3339, UTC, millisecond precision (2026-11-27T20:30:00.123Z).
RFC3339_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


def assert_timestamps(body: dict[str, Any], *keys: str) -> None:
    """Each of ``keys`` is null or an RFC 3339 UTC timestamp; at least one is set."""
    values = [body[key] for key in keys]
    assert any(value is not None for value in values), body
    for key, value in zip(keys, values, strict=True):
        assert value is None or RFC3339_UTC.fullmatch(value), (key, value)


def expect_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is ``status`` with the one error shape of the API and ``code``."""
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url.path}: expected {status}, "
        f"got {response.status_code}: {response.text}"
    )
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) <= {"code", "message", "details"}, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"], error
    if "details" in error:
        assert isinstance(error["details"], list), error
    return error


def expect_client_error(response: httpx.Response) -> dict[str, Any]:
    """Any 4xx, with the error shape: what every bad input must get (never a 5xx)."""
    assert 400 <= response.status_code < 500, (
        f"{response.request.method} {response.request.url}: expected a 4xx, "
        f"got {response.status_code}: {response.text}"
    )
    return expect_error(response, response.status_code, response.json()["error"]["code"])


def finish(runner: RunnerClient, lease: Lease, status: str = "completed", **extra: Any) -> Any:
    """Start the attempt and report ``status``; returns the result body."""
    check(runner.start(lease), 200)
    return check(runner.result(lease, status, **extra), 200)


@dataclass
class Member:
    """One tar member: a regular file unless ``kind`` says otherwise."""

    name: str
    data: bytes = b""
    kind: bytes = tarfile.REGTYPE
    linkname: str = ""


def make_tar_gz(*members: Member) -> bytes:
    """A .tar.gz with exactly these members, unsafe ones included."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for member in members:
            info = tarfile.TarInfo(member.name)
            info.type = member.kind
            info.linkname = member.linkname
            info.mode = 0o644
            if member.kind == tarfile.REGTYPE:
                info.size = len(member.data)
                archive.addfile(info, io.BytesIO(member.data))
            else:
                archive.addfile(info)
    return buffer.getvalue()


def walk_pages(
    team: TeamClient, path: str, key: str, field: str, limit: int, **params: Any
) -> list[list[Any]]:
    """Follow ``next_cursor`` from the first page to the last; returns each page's
    ``field`` values. The last page, and only it, has a null cursor."""
    pages: list[list[Any]] = []
    cursor: str | None = None
    while True:
        query: dict[str, Any] = {**params, "limit": limit}
        if cursor is not None:
            query["cursor"] = cursor
        body = check(team.get(path, params=query), 200)
        assert set(body) == {key, "next_cursor"}, body
        assert len(body[key]) <= limit
        pages.append([item[field] for item in body[key]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert isinstance(cursor, str) and body[key], body
        assert len(pages) < 100, "next_cursor never became null"


def offset_page(
    team: TeamClient, path: str, key: str, field: str, *, limit: int, offset: int
) -> list[Any]:
    body = check(team.get(path, params={"limit": limit, "offset": offset}), 200)
    return [item[field] for item in body[key]]
