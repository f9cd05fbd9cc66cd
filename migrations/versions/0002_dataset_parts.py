"""store dataset bytes in parts (uploads never held whole in memory)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dataset_parts",
        sa.Column("dataset_id", sa.String(36),
                  sa.ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("part", sa.Integer, primary_key=True),
        sa.Column("content", sa.LargeBinary, nullable=False),
    )
    with op.batch_alter_table("datasets") as batch:
        batch.alter_column("content", existing_type=sa.LargeBinary, nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.alter_column("content", existing_type=sa.LargeBinary, nullable=False)
    op.drop_table("dataset_parts")
