"""A throwaway PostgreSQL cluster for the tests that run on PostgreSQL
(``MINITOWER_TEST_DATABASE=postgresql``): Debian's postgresql-15 binaries, ``initdb``
into a temporary folder, one server on a free port of 127.0.0.1 with its socket in that
folder, stopped and removed at the end. Durability is switched off (fsync, synchronous
commit, full-page writes): the cluster lives for one test session.

PostgreSQL refuses to run as root: as root, the cluster is created and started as the
``postgres`` user (its folder handed to that user); any other user runs it as itself.
Each test gets a database of its own, created from a migrated template
(``CREATE DATABASE … TEMPLATE``: a file copy, milliseconds).
"""

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

import psycopg

BIN_DIR = Path(os.environ.get("MINITOWER_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
_SERVICE_USER = "postgres"
_START_TIMEOUT = 30
_STOP_TIMEOUT = 30
_SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    # Tests open an engine per test (pool up to 2 x 20) and race tests several more.
    "max_connections": "300",
    "shared_buffers": "64MB",
    "log_min_messages": "warning",
}


def available() -> bool:
    return (BIN_DIR / "pg_ctl").is_file()


def _free_port() -> int:
    with closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class PostgresCluster:
    folder: Path
    port: int
    user: str
    _names: Iterator[int]

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    def url(self, database: str, password: str | None = None) -> str:
        """The database's URL; with ``password`` in it, which the cluster (trust
        authentication) never asks for: for tests that check it is never shown."""
        credentials = self.user if password is None else f"{self.user}:{password}"
        return f"postgresql+psycopg://{credentials}@127.0.0.1:{self.port}/{database}"

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user=self.user, dbname="postgres", autocommit=True
        )

    def create_database(self, template: str | None = None) -> str:
        """A new empty database (or a copy of ``template``); returns its name."""
        name = f"test_{os.getpid()}_{next(self._names)}"
        clause = f" TEMPLATE {template} STRATEGY FILE_COPY" if template else ""
        with self._connect() as conn:
            conn.execute(f"CREATE DATABASE {name}{clause}")  # type: ignore[arg-type]
        return name

    def drop_database(self, name: str) -> None:
        with self._connect() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # type: ignore[arg-type]

    def restart(self) -> None:
        """Stop the server (sessions are told and closed, as by an operator's restart)
        and start it again on the same port and folder."""
        # With its log file named again: else the server keeps pg_ctl's output open.
        self._pg_ctl(
            "restart",
            "-w",
            "-m",
            "fast",
            "-t",
            str(_START_TIMEOUT),
            "-l",
            str(self.folder / "server.log"),
        )
        _wait_until_accepting(self)

    def stop(self) -> None:
        self._pg_ctl("stop", "-m", "immediate", "-t", str(_STOP_TIMEOUT))
        shutil.rmtree(self.folder, ignore_errors=True)

    def _pg_ctl(self, *args: str) -> None:
        _run([str(BIN_DIR / "pg_ctl"), "-D", str(self.data_dir), *args])


def _service_account() -> pwd.struct_passwd | None:
    """The account the server runs as when the tests run as root."""
    return pwd.getpwnam(_SERVICE_USER) if os.geteuid() == 0 else None


def _run(command: list[str]) -> None:
    account = _service_account()
    subprocess.run(
        command,
        check=True,
        capture_output=True,
        timeout=_START_TIMEOUT,
        user=account.pw_uid if account else None,
        group=account.pw_gid if account else None,
        cwd="/",
    )


def start_cluster() -> PostgresCluster:
    """initdb and start a cluster; the caller stops it (``PostgresCluster.stop``)."""
    folder = Path(tempfile.mkdtemp(prefix="minitower-pg-"))
    account = _service_account()
    if account is not None:
        os.chown(folder, account.pw_uid, account.pw_gid)
    user = "postgres"
    cluster = PostgresCluster(folder=folder, port=_free_port(), user=user, _names=count(1))
    try:
        _run(
            [
                str(BIN_DIR / "initdb"),
                "-D",
                str(cluster.data_dir),
                "-U",
                user,
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ]
        )
        options = " ".join(f"-c {name}={value}" for name, value in _SERVER_SETTINGS.items())
        cluster._pg_ctl(
            "start",
            "-w",
            "-t",
            str(_START_TIMEOUT),
            "-l",
            str(folder / "server.log"),
            "-o",
            f"-p {cluster.port} -k {folder} {options}",
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        output = getattr(exc, "stderr", b"") or b""
        log = folder / "server.log"
        detail = log.read_text()[-2000:] if log.exists() else output.decode(errors="replace")
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"could not start PostgreSQL ({exc}): {detail}") from exc
    _wait_until_accepting(cluster)
    return cluster


def _wait_until_accepting(cluster: PostgresCluster) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while True:
        try:
            with cluster._connect():
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextmanager
def running_cluster() -> Iterator[PostgresCluster]:
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()
