"""Ensembles: a job's member runs, the job's member count, and each value's standard error

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-13
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:  # every existing job ran alone
        batch.add_column(sa.Column("ensemble", sa.Integer, nullable=False, server_default="1"))
    with op.batch_alter_table("job_values") as batch:
        batch.add_column(sa.Column("std_error", sa.Float, nullable=True))
    op.create_table(
        "job_members",
        sa.Column("id", sa.String(48), primary_key=True),
        sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("seed", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("progress", sa.JSON, nullable=False),
        sa.Column("error", sa.JSON, nullable=True),
        sa.Column("summary", sa.JSON, nullable=True),
        sa.Column("values", sa.LargeBinary, nullable=True),
        sa.Column("reward_trace", sa.LargeBinary, nullable=True),
        sa.Column("checkpoint", sa.LargeBinary, nullable=True),
        sa.Column("checkpoint_iteration", sa.Integer, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_holder", sa.String(128), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_job_members_job_number", "job_members", ["job_id", "number"],
                    unique=True)
    op.create_index("ix_job_members_state", "job_members", ["state"])


def downgrade() -> None:
    op.drop_index("ix_job_members_state", "job_members")
    op.drop_index("ix_job_members_job_number", "job_members")
    op.drop_table("job_members")
    with op.batch_alter_table("job_values") as batch:
        batch.drop_column("std_error")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("ensemble")
