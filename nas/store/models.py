"""The SQL schema (SQLAlchemy 2.0 typed ORM). Changes go through migrations/ (Alembic)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# A quality value measured with the supernet after a predictor-driven search (predictor+verify)
# is a `metrics` row beside the searched one, named as the metric plus this suffix.
MEASURED_SUFFIX = "_measured"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class Supernet(Base):
    """A trained supernet file, known by the SHA-256 of its bytes."""

    __tablename__ = "supernets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    path: Mapped[str] = mapped_column(Text)
    space: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Predictor(Base):
    __tablename__ = "predictors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    path: Mapped[str] = mapped_column(Text)
    supernet_id: Mapped[int] = mapped_column(ForeignKey("supernets.id"))
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Search(Base):
    __tablename__ = "searches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # running | cancelling | cancelled | completed | infeasible | failed
    status: Mapped[str] = mapped_column(String(20), index=True)
    config: Mapped[dict[str, Any]]
    space: Mapped[str] = mapped_column(String(200))
    supernet_id: Mapped[int] = mapped_column(ForeignKey("supernets.id"))
    predictor_id: Mapped[int | None] = mapped_column(ForeignKey("predictors.id"))
    generations_total: Mapped[int] = mapped_column(Integer)
    generations_done: Mapped[int] = mapped_column(Integer, default=0)
    candidates_done: Mapped[int] = mapped_column(Integer, default=0)
    evaluations_done: Mapped[int] = mapped_column(Integer, default=0)  # distinct archs
    feasible_done: Mapped[int] = mapped_column(Integer, default=0)
    best: Mapped[dict[str, Any]] = mapped_column(default=dict)  # metric -> best feasible value
    message: Mapped[str] = mapped_column(Text, default="")
    # the driver that holds the search's lease: host:pid:token (older rows: host:pid); it may
    # write the search's rows while lease_until is in the future (see nas.search.lifecycle)
    driver: Mapped[str] = mapped_column(String(200), default="")
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    seconds: Mapped[float] = mapped_column(Float, default=0.0)  # time spent searching
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    supernet: Mapped[Supernet] = relationship()
    predictor: Mapped[Predictor | None] = relationship()


class Candidate(Base):
    """One evaluated trial of a search: an arch, its generation and whether it is feasible."""

    __tablename__ = "candidates"
    __table_args__ = (
        UniqueConstraint("search_id", "trial", name="uq_candidates_search_trial"),
        Index("ix_candidates_search_feasible", "search_id", "feasible"),
        Index("ix_candidates_search_arch", "search_id", "arch_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("searches.id", ondelete="CASCADE"))
    trial: Mapped[int] = mapped_column(Integer)  # the Optuna trial number within the search
    generation: Mapped[int] = mapped_column(Integer)
    arch_id: Mapped[str] = mapped_column(String(32))
    arch: Mapped[dict[str, Any]]
    params: Mapped[dict[str, Any]]  # the Optuna parameters, to rebuild the study on resume
    feasible: Mapped[bool] = mapped_column(Boolean)
    violation: Mapped[float] = mapped_column(Float)  # sum of relative limit excesses, 0 if ok
    # where the quality metrics came from: predictor | supernet (measured). The values, of
    # any model family (top1, fid, ...), are `metrics` rows with an empty device.
    quality_source: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Metric(Base):
    """One value of one candidate on one device (long format, indexed for Pareto filters)."""

    __tablename__ = "metrics"
    __table_args__ = (
        # covering: one metric of a search read as a column never touches the table
        Index(
            "ix_metrics_search_metric_column",
            "search_id",
            "device",
            "name",
            "candidate_id",
            "value",
        ),
        Index("ix_metrics_candidate", "candidate_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("searches.id", ondelete="CASCADE"))
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id", ondelete="CASCADE"))
    device: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(100))
    value: Mapped[float] = mapped_column(Float)


class Export(Base):
    __tablename__ = "exports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("searches.id", ondelete="CASCADE"))
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id", ondelete="CASCADE"))
    formats: Mapped[list[Any]]
    out_dir: Mapped[str] = mapped_column(Text)
    card: Mapped[dict[str, Any]]  # the model card; {} until the export has completed
    # queued | running | completed | failed: `nas export` writes a completed row at the end;
    # an API export is queued, then run by a worker holding the row's lease (driver and
    # lease_until, as a search's), so that a restarted server runs it again, and only once
    status: Mapped[str] = mapped_column(String(20), default="completed", index=True)
    message: Mapped[str] = mapped_column(Text, default="")
    # what a running export's worker does now ("writing onnx"); "" when not running
    phase: Mapped[str] = mapped_column(String(200), default="")
    # each file written (name, format, bytes, sha256) in out_dir, recorded on completion by
    # every door; None on rows older than migration 0007 (their card names the files)
    files: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    driver: Mapped[str] = mapped_column(String(200), default="")
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # when the export started (a CLI export) or was queued (an API export)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
