"""Training jobs and their logs.

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_Json = sa.JSON(none_as_null=True)
_Serial = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "training_jobs",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("client_id", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("project_id", sa.String(200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("worker", sa.String(200), nullable=True),
        sa.Column("stop_requested", sa.Boolean(), nullable=False),
        sa.Column("spec", _Json, nullable=False),
        sa.Column("progress", _Json, nullable=True),
        sa.Column("evaluation", _Json, nullable=True),
        sa.Column("artifact", _Json, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_training_jobs"),
    )
    op.create_index("ix_training_jobs_status_created", "training_jobs", ["status", "created_at"])
    op.create_index("ix_training_jobs_client_created", "training_jobs", ["client_id", "created_at"])
    op.create_table(
        "training_job_logs",
        sa.Column("seq", _Serial, autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("level", sa.String(10), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["training_jobs.id"], name="fk_training_job_logs_job_id_training_jobs",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("seq", name="pk_training_job_logs"),
    )
    op.create_index("ix_training_job_logs_job_seq", "training_job_logs", ["job_id", "seq"])


def downgrade() -> None:
    op.drop_table("training_job_logs")
    op.drop_table("training_jobs")
