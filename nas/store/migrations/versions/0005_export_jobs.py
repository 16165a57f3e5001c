"""Exports as jobs: `exports.status`, `message`, `driver`, `lease_until`, `finished_at`

An export made by the HTTP API is queued, then run by a worker process that holds a lease on
its row (as a search's driver does), so that a restarted server runs it again and two servers
never run it twice. Every export of an older database was written in one go by `nas export`:
its status is `completed`.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("exports") as batch:
        batch.add_column(
            sa.Column("status", sa.String(20), nullable=False, server_default="completed")
        )
        batch.add_column(sa.Column("message", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("driver", sa.String(200), nullable=False, server_default=""))
        batch.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_exports_status", ["status"])


def downgrade() -> None:
    with op.batch_alter_table("exports") as batch:
        batch.drop_index("ix_exports_status")
        for column in ("finished_at", "lease_until", "driver", "message", "status"):
            batch.drop_column(column)
