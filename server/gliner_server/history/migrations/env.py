"""Alembic environment: always online, on the connection the store hands over.

:func:`gliner_server.history.database.upgrade` puts an open connection (inside
a transaction, holding the migration lock) into ``config.attributes``.
"""
from alembic import context

from gliner_server.history.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
