"""dataset parts: stored out of line without PostgreSQL's own compression

The parts are an LZ4-compressed Arrow IPC stream already; PostgreSQL's default (pglz on TOAST)
spent as long trying to compress them again as writing them (80 MB: 2.0 s vs 0.9 s).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE dataset_parts ALTER COLUMN content SET STORAGE EXTERNAL")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE dataset_parts ALTER COLUMN content SET STORAGE EXTENDED")
