"""candidates.top1 may be empty: generator searches keep their quality metrics in `metrics`

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("candidates") as batch:
        batch.alter_column("top1", existing_type=sa.Float(), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("candidates") as batch:
        batch.alter_column("top1", existing_type=sa.Float(), nullable=False)
