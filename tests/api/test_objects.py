"""The object stores (minitower_api/objects): the local one and the PostgreSQL one keep
what the spool received, once per content, readable a chunk at a time; nothing is kept
of an upload over the limit or of a transaction that fails; the PostgreSQL store is
refused without PostgreSQL and streams 100 MiB with bounded memory; prune removes the
objects it keeps that nothing references."""

import hashlib
import io
import os
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine

from minitower_api.maintenance import prune
from minitower_api.objects import (
    LocalObjectStore,
    ObjectStore,
    PostgresObjectStore,
    Spool,
    Spooled,
    TooLarge,
    artifact_key,
)
from minitower_api.objects.postgres import ChangedUpload
from minitower_api.objects.spool import CHUNK
from minitower_api.settings import ApiSettings
from minitower_shared.clock import utcnow
from minitower_shared.db import create_db_engine, write_session
from minitower_shared.store import objects as object_store
from tests.support.clients import TeamClient
from tests.support.databases import ON_POSTGRESQL
from tests.support.maintenance import minitowerd
from tests.support.memory import peak_memory

MiB = 1024 * 1024
needs_postgresql = pytest.mark.skipif(
    not ON_POSTGRESQL, reason="the PostgreSQL store: MINITOWER_TEST_DATABASE=postgresql"
)


@pytest.fixture(params=["local", pytest.param("postgres", marks=needs_postgresql)])
def store(request: pytest.FixtureRequest, settings: ApiSettings, engine: Engine) -> ObjectStore:
    if request.param == "postgres":
        return PostgresObjectStore(engine)
    return LocalObjectStore(settings.objects_dir)


@pytest.fixture
def spool(settings: ApiSettings) -> Spool:
    return Spool(settings.objects_dir)


def put(store: ObjectStore, engine: Engine, spooled: Spooled) -> bool:
    """Keep a spooled upload as the upload route does: under the object's lock, in a
    write transaction."""
    key = artifact_key(spooled.sha256)
    with write_session(engine) as session:
        object_store.hold(session, key)
        return store.commit(session, spooled, key)


def read(store: ObjectStore, key: str) -> bytes:
    return b"".join(store.chunks(key))


def spooled_files(spool: Spool) -> list[Path]:
    return sorted(spool.folder.iterdir())


def test_what_is_stored_reads_back_whole_in_chunks(
    store: ObjectStore, spool: Spool, engine: Engine
) -> None:
    data = os.urandom(2 * CHUNK + 12345)  # three chunks, the last one short
    spooled = spool.receive(io.BytesIO(data), max_bytes=len(data))
    assert spooled.sha256 == hashlib.sha256(data).hexdigest() and spooled.size == len(data)
    assert put(store, engine, spooled) is True
    key = artifact_key(spooled.sha256)
    assert store.size(key) == len(data)
    chunks = list(store.chunks(key))
    assert [len(c) for c in chunks] == [CHUNK, CHUNK, 12345]
    assert b"".join(chunks) == data
    assert spooled_files(spool) == []


def test_the_same_bytes_twice_are_stored_once(
    store: ObjectStore, spool: Spool, engine: Engine
) -> None:
    data = b"same content" * 1000
    first = spool.receive(io.BytesIO(data), max_bytes=len(data))
    second = spool.receive(io.BytesIO(data), max_bytes=len(data))
    assert put(store, engine, first) is True
    assert put(store, engine, second) is False
    assert read(store, artifact_key(first.sha256)) == data
    assert spooled_files(spool) == []


def test_an_upload_over_the_limit_leaves_nothing(spool: Spool) -> None:
    with pytest.raises(TooLarge):
        spool.receive(io.BytesIO(b"x" * (CHUNK + 1)), max_bytes=CHUNK)
    assert spooled_files(spool) == []


def test_a_deleted_object_is_gone(store: ObjectStore, spool: Spool, engine: Engine) -> None:
    spooled = spool.receive(io.BytesIO(b"short-lived"), max_bytes=100)
    put(store, engine, spooled)
    key = artifact_key(spooled.sha256)
    with write_session(engine) as session:
        store.delete(session, key)
        store.delete(session, key)  # absent: no error
    assert store.size(key) is None


@needs_postgresql
def test_a_failed_transaction_keeps_nothing_of_the_object(spool: Spool, engine: Engine) -> None:
    """The object's rows are written in the transaction of the version that refers to
    it: when that transaction fails, neither is kept."""
    store = PostgresObjectStore(engine)
    spooled = spool.receive(io.BytesIO(b"rolled back" * 500), max_bytes=MiB)
    key = artifact_key(spooled.sha256)

    def commit_then_fail() -> None:
        with write_session(engine) as session:
            assert store.commit(session, spooled, key) is True
            raise RuntimeError("the version row failed")

    with pytest.raises(RuntimeError, match="the version row failed"):
        commit_then_fail()
    assert store.size(key) is None


@needs_postgresql
def test_a_spooled_file_that_changed_is_refused(spool: Spool, engine: Engine) -> None:
    """The store hashes what it writes: bytes that no longer match the key are not kept."""
    store = PostgresObjectStore(engine)
    spooled = spool.receive(io.BytesIO(b"as received" * 500), max_bytes=MiB)
    spooled.path.write_bytes(b"tampered with" * 500)
    with pytest.raises(ChangedUpload):
        put(store, engine, spooled)
    assert store.size(artifact_key(spooled.sha256)) is None


@needs_postgresql
def test_100_mib_goes_in_and_out_with_bounded_memory(
    spool: Spool, engine: Engine, tmp_path: Path
) -> None:
    """Neither the write nor the read holds the object: Python's peak and the resident
    set's growth stay a small multiple of one chunk for 100 chunks."""
    size = 100 * MiB
    source = tmp_path / "artifact.tar.gz"
    digest = hashlib.sha256()
    with source.open("wb") as out:
        for _ in range(size // MiB):
            block = os.urandom(MiB)
            digest.update(block)
            out.write(block)
    with source.open("rb") as upload:
        spooled = spool.receive(upload, max_bytes=size)
    source.unlink()
    store = PostgresObjectStore(engine)
    key = artifact_key(spooled.sha256)
    with peak_memory() as writing:
        assert put(store, engine, spooled) is True
    read_back = hashlib.sha256()
    with peak_memory() as reading:
        for chunk in store.chunks(key):
            read_back.update(chunk)
    assert read_back.hexdigest() == digest.hexdigest() == spooled.sha256
    for peak in (writing, reading):
        assert peak.python_bytes < 8 * MiB, peak
        assert peak.rss_growth_bytes < 32 * MiB, peak


def test_prune_removes_the_database_objects_nothing_references(
    settings: ApiSettings, engine: Engine, team: TeamClient, hello_archive: bytes
) -> None:
    """On either engine: the tables exist on SQLite too, empty unless the PostgreSQL
    store wrote them, and prune treats their rows as it treats files."""
    deployed = team.deploy("hello", hello_archive)
    referenced = artifact_key(deployed["artifact_sha256"])
    orphan = artifact_key("ab" * 32)
    with write_session(engine) as session:
        for sha256 in (deployed["artifact_sha256"], "ab" * 32):
            key = artifact_key(sha256)
            # The PostgreSQL store has the deployed one already.
            if object_store.claim(session, key, sha256, 5, utcnow()):
                object_store.add_chunk(session, key, 0, b"bytes")
    later = utcnow() + prune.OBJECT_MIN_AGE + timedelta(minutes=1)

    def run(*, dry_run: bool, now: datetime) -> list[str]:
        report = prune.prune(
            settings.database,
            settings.objects_dir,
            older_than=timedelta(days=1),
            dry_run=dry_run,
            now=now,
        )
        return [key for key, _ in report.objects]

    assert run(dry_run=False, now=utcnow()) == [], "younger than OBJECT_MIN_AGE: kept"
    assert run(dry_run=True, now=later) == [orphan]
    assert run(dry_run=False, now=later) == [orphan]
    with write_session(engine) as session:
        assert object_store.object_size(session, orphan) is None
        assert object_store.object_size(session, referenced) is not None


def test_the_postgresql_store_is_refused_without_postgresql(
    tmp_path: Path, settings: ApiSettings
) -> None:
    with pytest.raises(ValidationError, match="MINITOWER_OBJECT_STORE=postgres"):
        ApiSettings(db_path=tmp_path / "x.db", object_store="postgres")
    engine = create_db_engine(tmp_path / "x.db", pool_size=1)
    try:
        with pytest.raises(ValueError, match="needs the database on PostgreSQL"):
            PostgresObjectStore(engine)
    finally:
        engine.dispose()


def test_minitowerd_refuses_to_start_with_the_postgresql_store_on_sqlite(tmp_path: Path) -> None:
    env = {
        "MINITOWER_DB_PATH": str(tmp_path / "x.db"),
        "MINITOWER_OBJECT_STORE": "postgres",
        "MINITOWER_LISTEN_ADDR": "127.0.0.1:9",
    }
    done: subprocess.CompletedProcess[str] = minitowerd(env=env, cwd=tmp_path)
    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "minitowerd: configuration error: MINITOWER_OBJECT_STORE=postgres keeps artifacts in "
        "the database, which must be PostgreSQL: set MINITOWER_DATABASE_URL, or use the "
        "local store"
    ]
