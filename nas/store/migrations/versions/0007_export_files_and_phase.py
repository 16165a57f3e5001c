"""Exports record their files and their phase: `exports.files`, `exports.phase`

`files` lists each file an export wrote (name, format, bytes, SHA-256) when it completes,
whichever door made it, so that the service can list and serve a `nas export` folder as
it serves its own jobs' folders, and can tell a file deleted or replaced since. Older rows
keep NULL: their files are read from the model card. `phase` is what a running export's
worker is doing ("writing onnx", "measuring int8 top-1"), for the page to show.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("exports") as batch:
        batch.add_column(sa.Column("files", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("phase", sa.String(200), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("exports") as batch:
        batch.drop_column("phase")
        batch.drop_column("files")
