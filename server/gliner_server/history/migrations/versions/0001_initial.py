"""Initial history schema: inferences and feedback.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_Json = sa.JSON(none_as_null=True)


def upgrade() -> None:
    op.create_table(
        "inferences",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("route", sa.String(200), nullable=False),
        sa.Column("model_id", sa.String(500), nullable=False),
        sa.Column("task", sa.String(100), nullable=False),
        sa.Column("client_id", sa.String(200), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("schema", _Json, nullable=True),
        sa.Column("parameters", _Json, nullable=True),
        sa.Column("output", _Json, nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("project_id", sa.String(200), nullable=True),
        sa.Column("training_job_id", sa.String(200), nullable=True),
        sa.Column("privacy", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_inferences"),
    )
    op.create_index("ix_inferences_client_created", "inferences", ["client_id", "created_at", "id"])
    op.create_table(
        "feedback",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  autoincrement=True, nullable=False),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("inference_id", sa.String(64), nullable=False),
        sa.Column("client_id", sa.String(200), nullable=False),
        sa.Column("verdict", sa.String(20), nullable=False),
        sa.Column("corrected_output", _Json, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_feedback"),
        sa.UniqueConstraint("id", name="uq_feedback_id"),
        sa.ForeignKeyConstraint(["inference_id"], ["inferences.id"],
                                name="fk_feedback_inference_id_inferences"),
    )
    op.create_index("ix_feedback_inference_seq", "feedback", ["inference_id", "seq"])


def downgrade() -> None:
    op.drop_table("feedback")
    op.drop_table("inferences")
