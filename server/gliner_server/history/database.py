"""Engines for the history database and migration to head on open.

SQLite (``sqlite:///path``) runs in WAL mode with ``synchronous=FULL`` (a
committed write is on disk), a busy timeout and foreign keys on; transactions
are begun explicitly (the pysqlite driver's own handling is bypassed) so writes
can take the write lock up front with ``BEGIN IMMEDIATE``. PostgreSQL
(``postgresql+psycopg://...``; ``postgresql://`` and ``postgres://`` mean the
same) may be shared by several replicas: migrations run under an advisory lock.

Every database call is bounded by ``timeout_s``: SQLite's busy timeout;
PostgreSQL's connect timeout, statement, lock and idle-in-transaction timeouts,
TCP keepalives and ``tcp_user_timeout`` (a host that vanished), and the wait for
a pooled connection. A server that stops answering altogether (a paused process)
is bounded one level up, where callers stop waiting (``HistoryStore``).
"""
from __future__ import annotations

import ast
import math
import sqlite3
import time
from pathlib import Path

import sqlalchemy as sa

_MIGRATIONS = Path(__file__).with_name("migrations")
# pg_advisory_xact_lock key: the first 8 bytes of sha256(b"gliner2-history-migrations").
_MIGRATION_LOCK = 3979033303387856004
DEFAULT_TIMEOUT_S = 5.0


def create_engine(url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> sa.Engine:
    """An engine for a history database URL, configured for durability and bounded waits."""
    parsed = sa.make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        return sa.create_engine(parsed, pool_pre_ping=True, pool_timeout=timeout_s,
                                connect_args=_postgresql_timeouts(timeout_s))
    if backend != "sqlite":
        raise ValueError(f"unsupported history database URL {parsed!r}: use sqlite:/// or postgresql+psycopg://")
    if not parsed.database or parsed.database == ":memory:":
        raise ValueError("the history needs a SQLite file: sqlite:///path/to/history.db")
    Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(parsed.set(database=str(Path(parsed.database).expanduser())),
                              pool_timeout=timeout_s)
    busy_ms = max(1, int(timeout_s * 1000))
    sa.event.listen(engine, "connect", lambda connection, _record: _configure_sqlite_connection(connection, busy_ms))
    sa.event.listen(engine, "begin", _begin_sqlite_transaction)
    return engine


def _postgresql_timeouts(timeout_s: float) -> dict:
    """libpq connection parameters bounding every wait on the server (see the module docstring)."""
    ms = max(1, int(timeout_s * 1000))
    return {
        "connect_timeout": max(2, math.ceil(timeout_s)),   # libpq's minimum is 2 s
        "options": f"-c statement_timeout={ms} -c lock_timeout={ms} "
                   f"-c idle_in_transaction_session_timeout={max(ms, 60_000)}",
        "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 3, "keepalives_count": 3,
        "tcp_user_timeout": max(ms, 10_000),
    }


def _configure_sqlite_connection(dbapi_connection, busy_ms: int) -> None:
    dbapi_connection.isolation_level = None  # no implicit BEGIN/COMMIT by the driver
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
    _enable_wal(cursor, busy_ms / 1000)
    for pragma in ("synchronous=FULL", "foreign_keys=ON"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _enable_wal(cursor, timeout_s: float) -> None:
    """Switch the file to WAL once (the mode is stored in the file).

    Switching needs an exclusive lock, and SQLite answers SQLITE_BUSY at once,
    without honouring busy_timeout, when another connection (another replica
    opening the same fresh file) holds one: retry until the timeout instead.
    """
    deadline = time.monotonic() + max(timeout_s, 30.0)
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _begin_sqlite_transaction(connection: sa.Connection) -> None:
    connection.exec_driver_sql(connection.get_execution_options().get("sqlite_begin", "BEGIN"))


def write_options(connection: sa.Connection) -> sa.Connection:
    """Mark a connection's next transaction as a write (SQLite: ``BEGIN IMMEDIATE``)."""
    return connection.execution_options(sqlite_begin="BEGIN IMMEDIATE")


def upgrade(engine: sa.Engine) -> None:
    """Migrate the database to head; concurrent callers wait for each other.

    A database already at head (every restart but the first) is left alone
    without importing Alembic, which costs about 0.1 s of start-up.
    """
    if _at_head(engine):
        return
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS).replace("%", "%%"))
    with engine.connect() as connection, write_options(connection).begin():
        if connection.dialect.name == "postgresql":
            # Migrations may take longer than a request's statement, and wait for another
            # replica's: neither is bounded by the request timeouts.
            connection.execute(sa.text("SET LOCAL statement_timeout = 0"))
            connection.execute(sa.text("SET LOCAL lock_timeout = 0"))
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"),
                               {"key": _MIGRATION_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def script_heads() -> set[str]:
    """Head revisions of the migration scripts, read from their source (no Alembic import).

    A head is a ``revision`` that no script names as its ``down_revision``. Any
    script this cannot read gives an empty set, so that Alembic decides.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (_MIGRATIONS / "versions").glob("*.py"):
        values = {}
        try:
            for node in ast.parse(path.read_text()).body:
                # `revision = "..."` or, as Alembic's newer template writes, `revision: str = "..."`
                target = (node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1
                          else node.target if isinstance(node, ast.AnnAssign) and node.value is not None
                          else None)
                if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
                    values[target.id] = ast.literal_eval(node.value)
        except (OSError, SyntaxError, ValueError):
            return set()
        if not isinstance(values.get("revision"), str):
            return set()
        revisions.add(values["revision"])
        down = values.get("down_revision")
        parents.update([down] if isinstance(down, str) else (down or ()))
    return revisions - parents


def _at_head(engine: sa.Engine) -> bool:
    """Whether the database's ``alembic_version`` names exactly the scripts' heads."""
    heads = script_heads()
    try:
        with engine.connect() as connection:
            current = set(connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())
    except sa.exc.DBAPIError:  # no alembic_version table: a new database
        return False
    return bool(heads) and current == heads
