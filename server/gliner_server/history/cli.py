"""``gliner2-export-feedback``: write feedback as ``gliner2`` training JSONL.

The database is ``--database-url``, else ``$GLINER2_DATABASE_URL``, else
``sqlite:///<data dir>/history.db`` with ``--data-dir`` (default
``~/.local/share/gliner2-service``).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import sqlalchemy as sa

from .store import HistoryStore

DEFAULT_DATA_DIR = Path("~/.local/share/gliner2-service")
DATABASE_URL_ENV = "GLINER2_DATABASE_URL"


def resolve_database_url(database_url: str | None = None, data_dir: str | Path | None = None) -> str:
    """The history database URL: explicit, else from the environment, else SQLite in the data dir."""
    if database_url:
        return database_url
    if os.environ.get(DATABASE_URL_ENV):
        return os.environ[DATABASE_URL_ENV]
    path = Path(data_dir or DEFAULT_DATA_DIR).expanduser().resolve() / "history.db"
    return f"sqlite:///{path}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gliner2-export-feedback",
        description="Export inferences with feedback as gliner2 training data (JSONL): confirmed "
                    "ones with their recorded output, corrected ones with the correction.")
    parser.add_argument("--database-url", help=f"history database (default ${DATABASE_URL_ENV}, "
                        "else sqlite:///<data dir>/history.db)")
    parser.add_argument("--data-dir", help=f"service data directory (default {DEFAULT_DATA_DIR})")
    parser.add_argument("--client-id", help="only this API client's inferences")
    parser.add_argument("--out", help="output file (default stdout)")
    args = parser.parse_args(argv)

    url = resolve_database_url(args.database_url, args.data_dir)
    database = sa.make_url(url).database
    if url.startswith("sqlite") and database and not Path(database).expanduser().exists():
        parser.error(f"no history database at {database}")
    with HistoryStore.open(url) as store:
        if args.out:
            with open(args.out, "w", encoding="utf-8", newline="\n") as out:
                count = store.export_training_jsonl(out, client_id=args.client_id)
        else:
            count = store.export_training_jsonl(sys.stdout, client_id=args.client_id)
    print(f"exported {count} training example(s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
