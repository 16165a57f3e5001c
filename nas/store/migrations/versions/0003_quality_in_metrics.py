"""Every quality value lives in `metrics`: candidates.top1 and top1_measured become metric rows

A classifier's top-1 was a column of `candidates` while a generator's FID was a `metrics`
row; now both are metrics rows of the network (empty device), named after the metric, and a
value verified with the supernet is the metric name plus "_measured". `top1_source` becomes
`quality_source`, since it says where any family's quality came from.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for column, name in (("top1", "top1"), ("top1_measured", "top1_measured")):
        op.execute(
            sa.text(
                "INSERT INTO metrics (search_id, candidate_id, device, name, value) "
                f"SELECT search_id, id, '', :name, {column} FROM candidates "
                f"WHERE {column} IS NOT NULL"
            ).bindparams(name=name)
        )
    with op.batch_alter_table("candidates") as batch:
        batch.alter_column(
            "top1_source", new_column_name="quality_source", existing_type=sa.String(20)
        )
        batch.drop_column("top1")
        batch.drop_column("top1_measured")


def downgrade() -> None:
    with op.batch_alter_table("candidates") as batch:
        batch.alter_column(
            "quality_source", new_column_name="top1_source", existing_type=sa.String(20)
        )
        batch.add_column(sa.Column("top1", sa.Float(), nullable=True))
        batch.add_column(sa.Column("top1_measured", sa.Float(), nullable=True))
    for column in ("top1", "top1_measured"):
        op.execute(
            sa.text(
                f"UPDATE candidates SET {column} = (SELECT value FROM metrics WHERE "
                "metrics.candidate_id = candidates.id AND metrics.device = '' AND "
                f"metrics.name = :name)"
            ).bindparams(name=column)
        )
    op.execute(
        sa.text("DELETE FROM metrics WHERE device = '' AND name IN ('top1', 'top1_measured')")
    )
