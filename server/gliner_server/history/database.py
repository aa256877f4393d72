"""Engines for the history database and migration to head on open.

SQLite (``sqlite:///path``) runs in WAL mode with ``synchronous=FULL`` (a
committed write is on disk), a busy timeout and foreign keys on; transactions
are begun explicitly (the pysqlite driver's own handling is bypassed) so writes
can take the write lock up front with ``BEGIN IMMEDIATE``. PostgreSQL
(``postgresql+psycopg://...``; ``postgresql://`` and ``postgres://`` mean the
same) may be shared by several replicas: migrations run under an advisory lock.
"""
from __future__ import annotations

import ast
import sqlite3
import time
from pathlib import Path

import sqlalchemy as sa

_MIGRATIONS = Path(__file__).with_name("migrations")
# pg_advisory_xact_lock key: the first 8 bytes of sha256(b"gliner2-history-migrations").
_MIGRATION_LOCK = 3979033303387856004
_SQLITE_BUSY_TIMEOUT_MS = 30_000


def create_engine(url: str) -> sa.Engine:
    """An engine for a history database URL, configured for durability."""
    parsed = sa.make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        return sa.create_engine(parsed, pool_pre_ping=True)
    if backend != "sqlite":
        raise ValueError(f"unsupported history database URL {parsed!r}: use sqlite:/// or postgresql+psycopg://")
    if not parsed.database or parsed.database == ":memory:":
        raise ValueError("the history needs a SQLite file: sqlite:///path/to/history.db")
    Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(parsed.set(database=str(Path(parsed.database).expanduser())))
    sa.event.listen(engine, "connect", _configure_sqlite_connection)
    sa.event.listen(engine, "begin", _begin_sqlite_transaction)
    return engine


def _configure_sqlite_connection(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None  # no implicit BEGIN/COMMIT by the driver
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
    _enable_wal(cursor)
    for pragma in ("synchronous=FULL", "foreign_keys=ON"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _enable_wal(cursor) -> None:
    """Switch the file to WAL once (the mode is stored in the file).

    Switching needs an exclusive lock, and SQLite answers SQLITE_BUSY at once,
    without honouring busy_timeout, when another connection (another replica
    opening the same fresh file) holds one: retry until the timeout instead.
    """
    deadline = time.monotonic() + _SQLITE_BUSY_TIMEOUT_MS / 1000
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
    with engine.connect() as connection:
        with write_options(connection).begin():
            if connection.dialect.name == "postgresql":
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
