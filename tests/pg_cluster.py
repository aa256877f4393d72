"""A throwaway PostgreSQL cluster for tests.

    cluster = PostgresCluster()
    url = cluster.start()                  # postgresql+psycopg://... (the "postgres" database)
    other = cluster.create_database("t1")  # a fresh database's URL
    cluster.stop()                         # stops the server, deletes every file

or ``with PostgresCluster() as cluster: ...``. The cluster lives in its own
short temporary directory (data dir, log and unix socket; no TCP listener) and
uses the newest server binaries under ``/usr/lib/postgresql/*/bin`` or on PATH
(``scripts/install.sh`` installs them). initdb refuses to run as root, so as
root the server runs as the ``postgres`` system user (created if missing) via
``runuser``. ``fsync`` is off: data survives killed processes, not power loss.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

SYSTEM_USER = "postgres"


def server_bin_dir() -> Path | None:
    """Directory holding initdb/pg_ctl/postgres, or None if PostgreSQL is not installed."""
    installed = sorted((Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")),
                       key=lambda d: [int(x) for x in d.parent.name.split(".") if x.isdigit()])
    if installed:
        return installed[-1]
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresCluster:
    """initdb + pg_ctl in a temporary directory; see the module docstring."""

    def __init__(self, start_timeout: float = 30.0):
        self.start_timeout = start_timeout
        self.root: Path | None = None
        self.port: int | None = None
        self.url: str | None = None

    def start(self) -> str:
        """Create and start the cluster; returns the URL of its ``postgres`` database."""
        bin_dir = server_bin_dir()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL server binaries not found; run scripts/install.sh as root")
        self.root = Path(tempfile.mkdtemp(prefix="pgc-"))  # short: socket paths max out at 107 bytes
        try:
            if os.geteuid() == 0:
                _ensure_system_user()
                shutil.chown(self.root, SYSTEM_USER, SYSTEM_USER)
            data = self.root / "data"
            self._run(bin_dir / "initdb", "-D", data, "-U", "postgres", "--auth=trust",
                      "--no-sync", "--encoding=UTF8", "--locale=C")
            self.port = _free_port()
            with open(data / "postgresql.conf", "a", encoding="utf-8") as conf:
                conf.write(f"\nport = {self.port}\nlisten_addresses = ''\n"
                           f"unix_socket_directories = '{self.root}'\nfsync = off\n")
            self._run(bin_dir / "pg_ctl", "-D", data, "-l", self.root / "server.log", "-w",
                      "-t", str(int(self.start_timeout)), "start")
        except BaseException:
            log = self.root / "server.log"
            detail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            self.stop()
            if detail:
                raise RuntimeError(f"PostgreSQL did not start:\n{detail}")
            raise
        self.url = self.database_url("postgres")
        return self.url

    def database_url(self, name: str) -> str:
        return f"postgresql+psycopg://postgres@/{name}?host={self.root}&port={self.port}"

    def create_database(self, name: str) -> str:
        """Create an empty database (name: letters, digits, underscores); returns its URL."""
        import psycopg

        if not name.replace("_", "").isalnum():
            raise ValueError(f"unsafe database name {name!r}")
        with psycopg.connect(host=str(self.root), port=self.port, user="postgres",
                             dbname="postgres", autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def server_pids(self) -> list[int]:
        """The postmaster and every backend and helper process it started."""
        postmaster = int((self.root / "data" / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(postmaster)], capture_output=True,
                                  text=True).stdout.split()
        return [postmaster, *map(int, children)]

    def pause(self) -> list[int]:
        """SIGSTOP every server process: connections stay open and nothing answers (a hung database)."""
        import signal

        pids = self.server_pids()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        return pids

    def resume(self, pids: list[int] | None = None) -> None:
        import signal

        for pid in pids or self.server_pids():
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        """Stop the server (immediately) and delete the cluster's directory; idempotent."""
        if self.root is None:
            return
        data = self.root / "data"
        bin_dir = server_bin_dir()
        if bin_dir is not None and (data / "postmaster.pid").exists():
            self._run(bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = self.port = self.url = None

    def __enter__(self) -> "PostgresCluster":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self, *command, check: bool = True) -> None:
        argv = [str(part) for part in command]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", SYSTEM_USER, "--", *argv]
        result = subprocess.run(argv, cwd=self.root, capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}):\n"
                               f"{result.stdout[-2000:]}{result.stderr[-2000:]}")


def _ensure_system_user() -> None:
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                        "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
                       check=True)
