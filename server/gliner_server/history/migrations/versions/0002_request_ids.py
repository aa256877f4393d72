"""Request ids on inferences (log correlation, idempotent retries) and the writers' heartbeat table.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("inferences", sa.Column("request_id", sa.String(200), nullable=True))
    op.add_column("inferences", sa.Column("dedupe_key", sa.String(64), nullable=True))
    op.create_index("uq_inferences_client_dedupe", "inferences", ["client_id", "dedupe_key"], unique=True)
    op.create_table(
        "heartbeat",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_heartbeat"),
    )


def downgrade() -> None:
    op.drop_table("heartbeat")
    op.drop_index("uq_inferences_client_dedupe", table_name="inferences")
    op.drop_column("inferences", "dedupe_key")
    op.drop_column("inferences", "request_id")
