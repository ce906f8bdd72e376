"""``minitowerd copy-to TARGET_URL``: move a SQLite deployment to PostgreSQL.

Every table of the schema (the models' metadata, so a table added later is never left
behind) is copied in foreign-key order with its ids, from one read transaction of the
SQLite file (a consistent snapshot) into one transaction of an empty PostgreSQL
database migrated to the same head: a copy that fails leaves the target empty, ready
for another try. The sequences then continue after the highest ids, and the local
store's objects are written into the database's object store (``--objects postgres``)
or left where they are (``--objects local``: the objects volume stays in use).

Verification reads everything back from the target: per table the row count and a
checksum over the rows' values, normalised so that both engines give the same one
(datetimes in UTC, JSON with sorted keys, NUL in text as U+FFFD, which PostgreSQL
stores instead of NUL); each object's bytes hashed again against its SHA-256. The
checksum of a table is the sum of its rows' SHA-256 digests (mod 2**256), which does
not depend on the order rows come back in: text keys sort by the database's collation,
which differs between the engines.

The source is read, never written. Writes to it during the copy (an API, reaper or
scheduler still running) are detected by ``PRAGMA data_version`` and fail the copy's
verdict: what they wrote is not in the target."""

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from alembic.util import CommandError
from sqlalchemy import Connection, Engine, Table, create_engine, event, func, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool
from sqlmodel import SQLModel

from minitower_api.maintenance import MaintenanceError, open_engine
from minitower_api.maintenance.files import tree_files
from minitower_api.objects.spool import CHUNK
from minitower_shared import models  # noqa: F401  (registers the tables on the metadata)
from minitower_shared.db import postgresql_url
from minitower_shared.dialect import reset_sequence
from minitower_shared.migrate import current_revision, head_revision, upgrade_to_head
from minitower_shared.models import ObjectChunk, StoredObject

ObjectsTarget = Literal["postgres", "local"]
# Rows per INSERT batch, and the bytes of text and binary values that end a batch
# sooner (log lines and chunks can be large; the batch is held in memory).
BATCH_ROWS = 1000
BATCH_BYTES = 8 * 1024 * 1024
_MODULUS = 2**256
# The spool's scratch folder: uploads in progress, never objects.
_SCRATCH = ("tmp",)


@dataclass(frozen=True)
class TableCheck:
    name: str
    source_rows: int
    target_rows: int
    source_checksum: str
    target_checksum: str

    @property
    def ok(self) -> bool:
        return self.source_rows == self.target_rows and self.source_checksum == self.target_checksum


@dataclass(frozen=True)
class ObjectsCheck:
    mode: ObjectsTarget
    copied: int = 0
    copied_bytes: int = 0
    verified: int = 0
    # Keys a version references that the local store does not hold: already lost.
    missing: list[str] = field(default_factory=list)
    # Keys whose bytes do not hash to what the version (or the key) records.
    mismatched: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.mismatched and self.verified == self.copied


@dataclass(frozen=True)
class CopyReport:
    source: Path
    target: str  # the URL without its password
    tables: list[TableCheck]
    objects: ObjectsCheck
    sequences_reset: int
    seconds: float
    source_changed: bool

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tables) and self.objects.ok and not self.source_changed


def url_label(url: str) -> str:
    """The URL for messages: never its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is named by its scheme only
        return url.split("://", 1)[0] + "://…"


def copy_tables() -> list[Table]:
    """Every table of the schema, parents before children (alembic_version is not part
    of the models' metadata: the target's own migration writes it)."""
    return list(SQLModel.metadata.sorted_tables)


# --- normalised row digests ------------------------------------------------------------


def _canonical(value: Any) -> bytes:
    """A value as bytes that are the same whichever engine it was read from."""
    if value is None:
        return b"\x00null"
    if isinstance(value, bool):
        return b"\x01true" if value else b"\x01false"
    if isinstance(value, int):
        return b"\x02" + str(value).encode()
    if isinstance(value, float):
        return b"\x03" + repr(value).encode()
    if isinstance(value, datetime):
        moment: datetime = value
        if moment.utcoffset() is not None:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
        return b"\x04" + moment.isoformat(timespec="microseconds").encode()
    if isinstance(value, str):
        return b"\x05" + value.replace("\x00", "\ufffd").encode()
    if isinstance(value, bytes | bytearray | memoryview):
        return b"\x06" + bytes(value)
    # JSON columns: dicts, lists (and numbers or strings at the top of a document).
    return b"\x07" + json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _row_digest(table: Table, row: Mapping[Any, Any]) -> int:
    digest = hashlib.sha256()
    for column in table.columns:
        encoded = _canonical(row[column.name])
        # Length-prefixed, so that no two different rows concatenate alike.
        digest.update(len(encoded).to_bytes(8, "big"))
        digest.update(encoded)
    return int.from_bytes(digest.digest(), "big")


class _TableSum:
    def __init__(self) -> None:
        self.rows = 0
        self.total = 0

    def add(self, table: Table, row: Mapping[Any, Any]) -> None:
        self.rows += 1
        self.total = (self.total + _row_digest(table, row)) % _MODULUS

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.total.to_bytes(32, "big")).hexdigest()


def _value_bytes(row: Mapping[Any, Any]) -> int:
    return sum(len(v) for v in row.values() if isinstance(v, str | bytes))


def _batches(rows: Iterable[Mapping[Any, Any]]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    size = 0
    for row in rows:
        batch.append(dict(row))
        size += _value_bytes(row)
        if len(batch) >= BATCH_ROWS or size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _ordered(table: Table) -> Any:
    return select(table).order_by(*table.primary_key.columns)


# --- the source: one read transaction of the SQLite file --------------------------------


def _source_engine(path: Path) -> Engine:
    """Read-only: the copy never writes the source, nor changes its journal mode."""
    if not path.is_file():
        raise MaintenanceError(f"database {path} does not exist")

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    engine = create_engine("sqlite://", creator=connect, poolclass=NullPool)

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # Deferred: the first read takes the snapshot; writers are never blocked (WAL).
        conn.exec_driver_sql("BEGIN")

    return engine


def _data_version(conn: Connection) -> int:
    raw = conn.connection.driver_connection
    assert isinstance(raw, sqlite3.Connection)
    return int(raw.execute("PRAGMA data_version").fetchone()[0])


def _check_source_schema(conn: Connection, path: Path) -> None:
    revision = current_revision_of(conn)
    head = head_revision()
    if revision != head:
        raise MaintenanceError(
            f"database {path} is at schema revision {revision or 'none'}, this MiniTower at "
            f"{head}: run `minitowerd migrate` on it first"
        )


def current_revision_of(conn: Connection) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    value = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    return None if value is None else str(value)


# --- the target --------------------------------------------------------------------------


@contextmanager
def _scrubbed(url: str) -> Iterator[None]:
    """Database and migration errors as one-line MaintenanceErrors that never hold the
    URL's password (drivers quote connection strings in some messages)."""
    password = make_url(url).password
    try:
        yield
    except MaintenanceError as exc:
        raise MaintenanceError(_without(str(exc), password)) from None
    except SQLAlchemyError as exc:
        message = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise MaintenanceError(_without(f"database error: {message}", password)) from None
    except CommandError as exc:
        raise MaintenanceError(_without(f"migration of the target: {exc}", password)) from None


def _without(message: str, password: str | None) -> str:
    return message.replace(password, "***") if password else message


def target_url(url: str) -> str:
    """The target as the engine takes it; refuses anything but a PostgreSQL URL."""
    try:
        return postgresql_url(url).render_as_string(hide_password=False)
    except ValueError as exc:
        raise MaintenanceError(f"the target must be a PostgreSQL URL: {exc}") from None
    except Exception:  # make_url's ArgumentError names the whole string
        raise MaintenanceError(
            f"the target must be a PostgreSQL URL (postgresql+psycopg://user@host:5432/db), "
            f"not {url_label(url)}"
        ) from None


def first_table_with_rows(conn: Connection) -> str | None:
    """The first table of the schema that exists in the target and holds a row."""
    present = set(inspect(conn).get_table_names())
    for table in copy_tables():
        if table.name in present and conn.execute(select(1).select_from(table).limit(1)).first():
            return table.name
    return None


def _refuse_non_empty(conn: Connection, label: str) -> None:
    table = first_table_with_rows(conn)
    if table is not None:
        raise MaintenanceError(
            f"the target {label} is not empty (table {table} has rows): copy-to fills only "
            "an empty database; create a new one (CREATE DATABASE) and copy into it"
        )


# --- the copy ------------------------------------------------------------------------------


def _copy_table(source: Connection, target: Connection, table: Table) -> _TableSum:
    seen = _TableSum()

    def counted(rows: Iterable[Any]) -> Iterator[Mapping[Any, Any]]:
        for row in rows:
            mapping = row._mapping
            seen.add(table, mapping)
            yield mapping

    # The SQLite cursor reads lazily: one batch of rows in memory at a time.
    for batch in _batches(counted(source.execute(_ordered(table)))):
        target.execute(table.insert(), batch)
    return seen


def _local_objects(objects_dir: Path) -> dict[str, Path]:
    return {
        str(path.relative_to(objects_dir)): path for path in tree_files(objects_dir, skip=_SCRATCH)
    }


def _recorded_digests(source: Connection) -> dict[str, str]:
    """What each referenced object must hash to, by key (from the versions' rows)."""
    version = SQLModel.metadata.tables["app_version"]
    rows = source.execute(
        select(version.c.artifact_object_key, version.c.artifact_sha256).distinct()
    )
    return {str(key): str(sha) for key, sha in rows}


def _file_digest(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as source:
        while data := source.read(CHUNK):
            digest.update(data)
            size += len(data)
    return digest.hexdigest(), size


def _copy_object(
    target: Connection, key: str, path: Path, sums: dict[str, _TableSum]
) -> tuple[str, int]:
    """Write a local file as a stored object, chunk by chunk, counting the rows it adds
    into the expected sums of their tables; its SHA-256 and size."""
    stored = StoredObject.__table__  # type: ignore[attr-defined]
    chunks = ObjectChunk.__table__  # type: ignore[attr-defined]
    sha256, size = _file_digest(path)
    row = {"key": key, "sha256": sha256, "size": size, "created_at": datetime.now(UTC)}
    target.execute(stored.insert().values(**row))
    sums[stored.name].add(stored, row)
    again = hashlib.sha256()
    seq = 0
    with path.open("rb") as source:
        while data := source.read(CHUNK):
            again.update(data)
            chunk = {"key": key, "seq": seq, "data": data}
            target.execute(chunks.insert().values(**chunk))
            sums[chunks.name].add(chunks, chunk)
            seq += 1
    if again.hexdigest() != sha256:
        raise MaintenanceError(f"object {path} changed while it was copied")
    return sha256, size


def _reread_digest(target: Connection, key: str) -> tuple[str | None, int]:
    """The stored object's bytes hashed again, a chunk per query; (sha256, size)."""
    chunks = ObjectChunk.__table__  # type: ignore[attr-defined]
    digest = hashlib.sha256()
    size = seq = 0
    while True:
        data = target.execute(
            select(chunks.c.data).where(chunks.c.key == key, chunks.c.seq == seq)
        ).scalar_one_or_none()
        if data is None:
            break
        digest.update(bytes(data))
        size += len(data)
        seq += 1
    return (digest.hexdigest() if seq else None), size


def _key_digest(key: str) -> str | None:
    """The SHA-256 a content-addressed key names (artifacts/sha256/ab/<hex>.tar.gz)."""
    name = key.rsplit("/", 1)[-1].split(".", 1)[0]
    return name if len(name) == 64 and all(c in "0123456789abcdef" for c in name) else None


def copy_to(
    source_path: Path, objects_dir: Path, url: str, *, objects: ObjectsTarget = "postgres"
) -> CopyReport:
    started = time.monotonic()
    engine_url = target_url(url)
    label = url_label(engine_url)
    source = _source_engine(source_path)
    with _scrubbed(engine_url):
        target = open_engine(engine_url)
        try:
            return _copy(
                source, target, source_path, objects_dir, engine_url, label, objects, started
            )
        finally:
            target.dispose()
            source.dispose()


def _copy(
    source: Engine,
    target: Engine,
    source_path: Path,
    objects_dir: Path,
    engine_url: str,
    label: str,
    objects: ObjectsTarget,
    started: float,
) -> CopyReport:
    with source.connect() as src, src.begin():
        _check_source_schema(src, source_path)
    # Refused before migrating: a database with data is not ours to change.
    with target.connect() as conn:
        _refuse_non_empty(conn, label)
    upgrade_to_head(engine_url)
    if current_revision(target) != head_revision():
        raise MaintenanceError(
            f"the target {label} did not reach schema revision {head_revision()}"
        )

    with source.connect() as src:
        before = _data_version(src)
        sums: dict[str, _TableSum] = {}
        object_check = ObjectsCheck(mode=objects)
        with src.begin():
            # Checked again in the snapshot that is copied.
            _check_source_schema(src, source_path)
            with target.begin() as dst:
                # Two copies into one target take turns; the second then finds it full.
                dst.execute(select(func.pg_advisory_xact_lock(func.hashtext("minitower copy-to"))))
                _refuse_non_empty(dst, label)
                for table in copy_tables():
                    sums[table.name] = _copy_table(src, dst, table)
                resets = [s for s in map(reset_sequence, copy_tables()) if s is not None]
                for statement in resets:
                    dst.execute(statement)
                if objects == "postgres":
                    object_check = _copy_objects(src, dst, objects_dir, sums)
        after = _data_version(src)

    checks = _verify_tables(target, sums)
    if objects == "postgres":
        object_check = _verify_objects(target, object_check)
    return CopyReport(
        source=source_path,
        target=label,
        tables=checks,
        objects=object_check,
        sequences_reset=len(resets),
        seconds=time.monotonic() - started,
        source_changed=after != before,
    )


def _copy_objects(
    src: Connection, dst: Connection, objects_dir: Path, sums: dict[str, _TableSum]
) -> ObjectsCheck:
    recorded = _recorded_digests(src)
    present = _local_objects(objects_dir)
    stored = StoredObject.__table__  # type: ignore[attr-defined]
    already = {str(k) for k in dst.execute(select(stored.c.key)).scalars()}
    missing = sorted(key for key in recorded if key not in present and key not in already)
    mismatched: list[str] = []
    copied = copied_bytes = 0
    for key, path in sorted(present.items()):
        if key in already:  # the source's own stored_object rows were copied as rows
            continue
        sha256, size = _copy_object(dst, key, path, sums)
        expected = recorded.get(key) or _key_digest(key)
        if expected is not None and expected != sha256:
            mismatched.append(key)
        copied += 1
        copied_bytes += size
    return ObjectsCheck(
        mode="postgres",
        copied=copied,
        copied_bytes=copied_bytes,
        missing=missing,
        mismatched=mismatched,
    )


def _verify_tables(target: Engine, sums: dict[str, _TableSum]) -> list[TableCheck]:
    checks = []
    with target.connect() as conn, conn.begin():
        for table in copy_tables():
            found = _TableSum()
            # A server-side cursor: the target's rows stream back a batch at a time.
            rows = conn.execution_options(stream_results=True, max_row_buffer=BATCH_ROWS).execute(
                _ordered(table)
            )
            for row in rows:
                found.add(table, row._mapping)
            counted = conn.execute(select(func.count()).select_from(table)).scalar_one()
            mine = sums[table.name]
            checks.append(
                TableCheck(
                    name=table.name,
                    source_rows=mine.rows,
                    target_rows=int(counted),
                    source_checksum=mine.checksum,
                    target_checksum=found.checksum,
                )
            )
    return checks


def _verify_objects(target: Engine, copied: ObjectsCheck) -> ObjectsCheck:
    """Every stored object of the target (copied ones and those that came as rows) read
    back and hashed against its recorded SHA-256 and size."""
    stored = StoredObject.__table__  # type: ignore[attr-defined]
    version = SQLModel.metadata.tables["app_version"]
    mismatched = list(copied.mismatched)
    verified = 0
    with target.connect() as conn, conn.begin():
        recorded = {
            str(key): str(sha)
            for key, sha in conn.execute(
                select(version.c.artifact_object_key, version.c.artifact_sha256).distinct()
            )
        }
        objects = conn.execute(select(stored.c.key, stored.c.sha256, stored.c.size)).all()
        for key, sha256, size in objects:
            digest, found = _reread_digest(conn, str(key))
            expected = recorded.get(str(key), str(sha256))
            if digest != sha256 or digest != expected or found != size:
                if key not in mismatched:
                    mismatched.append(str(key))
            else:
                verified += 1
    return ObjectsCheck(
        mode=copied.mode,
        copied=len(objects),
        copied_bytes=copied.copied_bytes,
        verified=verified,
        missing=copied.missing,
        mismatched=sorted(mismatched),
    )


def summary(report: CopyReport) -> list[str]:
    width = max(len(t.name) for t in report.tables)
    lines = [
        f"copied {report.source} to {report.target} in {report.seconds:.1f} s",
        f"  {'table':<{width}}  {'source':>8}  {'target':>8}  checksum (sha256)",
    ]
    for t in report.tables:
        verdict = "ok" if t.ok else f"DIFFERS (target {t.target_checksum[:16]})"
        lines.append(
            f"  {t.name:<{width}}  {t.source_rows:>8}  {t.target_rows:>8}  "
            f"{t.source_checksum[:16]}  {verdict}"
        )
    o = report.objects
    if o.mode == "postgres" and o.copied:
        lines.append(
            "  (stored_object, object_chunk: the source's rows plus those of the objects "
            "copied from MINITOWER_OBJECTS_DIR)"
        )
    lines.append(f"  sequences: {report.sequences_reset} reset to continue after the highest id")
    if o.mode == "local":
        lines.append(
            "  objects: not copied (--objects local): keep MINITOWER_OBJECTS_DIR and "
            "MINITOWER_OBJECT_STORE=local"
        )
    else:
        lines.append(
            f"  objects: {o.copied} in the PostgreSQL store ({o.copied_bytes} bytes copied), "
            f"{o.verified} re-read with their SHA-256"
        )
        if o.missing:
            lines.append(
                f"  objects missing in the source already ({len(o.missing)}): "
                + ", ".join(o.missing[:5])
            )
        if o.mismatched:
            lines.append(
                f"  objects whose SHA-256 differs ({len(o.mismatched)}): "
                + ", ".join(o.mismatched[:5])
            )
    if report.source_changed:
        lines.append(
            "  the source was written during the copy (an API, reaper or scheduler is "
            "running): those writes are not in the target; stop them and copy again into a "
            "new empty database"
        )
    if report.ok:
        lines.append(
            "verified: every table's rows and checksum match"
            + (", every object's SHA-256 matches" if o.mode == "postgres" else "")
        )
    else:
        lines.append("NOT verified: see above")
    return lines
