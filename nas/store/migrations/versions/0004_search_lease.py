"""A search's lease: `searches.lease_until`, until when its `driver` may write its rows

The driver of a search renews the lease when it starts and in each generation's transaction;
`resume` refuses while another driver's lease is fresh, and `--force` takes it over. NULL (the
value for every search of an older database) is a lease that nobody holds.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("searches") as batch:
        batch.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("searches") as batch:
        batch.drop_column("lease_until")
