"""Fixtures shared by the test suites."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from supernet.mbconv.checkpoint import TrainedSupernet, load_supernet
from supernet.mbconv.train import TrainConfig, train_supernet
from tests.nas.service.launch_load import write_ofa_files

# CI (.ci/run) starts a throwaway PostgreSQL 15 and names it here; without it, PG tests skip.
POSTGRES = os.environ.get("NAS_TEST_POSTGRES_URL")
needs_postgres = pytest.mark.skipif(
    not POSTGRES, reason="set NAS_TEST_POSTGRES_URL (.ci/run starts a server)"
)


@pytest.fixture
def postgres_url():
    """A fresh database on the CI server, dropped afterwards."""
    name = f"nas_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = POSTGRES.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(autouse=True)
def _no_database_from_the_environment(monkeypatch):
    """A developer's $NAS_DATABASE_URL must not send test searches to their database."""
    monkeypatch.delenv("NAS_DATABASE_URL", raising=False)


@pytest.fixture(scope="session")
def tiny_supernet(tmp_path_factory) -> TrainedSupernet:
    """A supernet trained for two steps on 32 digits: real, and ready in a few seconds."""
    out = tmp_path_factory.mktemp("tiny-supernet")
    config = TrainConfig(
        space="mnist-mbv3",
        data={"kind": "mnist", "limit": 32},
        out_dir=str(out),
        batch_size=16,
        bn_recalibration_images=16,
        phases=[{"name": "kernel", "epochs": 1, "lr": 0.05, "ks": [3, 5, 7]}],
    )
    return load_supernet(train_supernet(config, progress=False).path)


# A space of a user's own, for 28x28 digits: two narrow stages, a few seconds to train.
USER_SPACE = {
    "name": "digits-mbconv",
    "description": "a test space for 28x28 digits",
    "in_channels": 1,
    "num_classes": 10,
    "stem_width": 8,
    "stem_stride": 2,
    "stem_act": "h_swish",
    "first_block_width": 8,
    "first_block_act": "relu",
    "stages": [
        {"width": 16, "depths": [1, 2], "stride": 2, "act": "relu"},
        {"width": 24, "depths": [1, 2], "stride": 2, "act": "h_swish", "se": True},
    ],
    "head": "mbv3",
    "head_widths": [48, 64],
    "head_act": "h_swish",
    "kernel_sizes": [3, 5],
    "expand_ratios": [3, 4],
    "resolutions": [16, 20, 28],
    "width_mults": [0.75, 1.0],
}


@pytest.fixture(scope="session")
def user_space_supernet(tmp_path_factory):
    """A supernet trained for two steps on USER_SPACE read from a YAML file, which is then
    deleted: (the trained file's path, the space as the file defined it)."""
    import yaml

    from supernet.space import get_space

    folder = tmp_path_factory.mktemp("user-space")
    space_file = folder / "digits.yaml"
    space_file.write_text(yaml.safe_dump(USER_SPACE))
    space = get_space(str(space_file))
    config = TrainConfig(
        space=str(space_file),
        data={"kind": "mnist", "limit": 32},
        out_dir=str(folder / "run"),
        batch_size=16,
        bn_recalibration_images=16,
        phases=[{"name": "kernel", "epochs": 1, "lr": 0.05, "ks": [3, 5]}],
    )
    path = train_supernet(config, progress=False).path
    space_file.unlink()
    return path, space


@pytest.fixture(scope="session")
def tiny_predictor(tiny_supernet) -> str:
    """An accuracy predictor fitted on 30 archs measured with the tiny supernet."""
    from supernet.mbconv.predictor import fit_predictor, measure_archs

    measurements = measure_archs(tiny_supernet, 30, seed=0, progress=False)
    predictor = fit_predictor(
        tiny_supernet.space, measurements, tiny_supernet.sha256, held_out=5, epochs=20
    )
    return str(predictor.save(tiny_supernet.path.parent / "predictor.pt"))


@pytest.fixture(scope="session")
def ofa_files(tmp_path_factory) -> tuple[Path, Path]:
    """A full-size once-for-all MobileNetV3 supernet file (ofa-mbv3-w1.2, 43 MB, untrained)
    and a predictor fitted on made-up accuracies (tests.nas.service.launch_load)."""
    return write_ofa_files(tmp_path_factory.mktemp("ofa"))


@pytest.fixture
def raw_config(tmp_path, tiny_supernet, tiny_predictor):
    """A factory of small, valid raw (unparsed) search configs on the tiny supernet."""

    def make(**overrides):
        raw = {
            "name": "test-search",
            "supernet": str(tiny_supernet.path),
            "predictor": tiny_predictor,
            "targets": {
                "stm32f746": {"peak_sram_kb": 12, "flash_kb": 600},
                "h100-sxm": {
                    "latency_ms": 0.7,
                    "batch": 64,
                    "precision": "fp16",
                    "runtime": "tensorrt",
                },
            },
            "algorithm": {"population": 8, "generations": 3, "seed": 0},
            "evaluation": "predictor",
            "database": f"sqlite:///{tmp_path / 'nas.db'}",
        }
        raw.update(overrides)
        return raw

    return make


@pytest.fixture
def search_config(raw_config):
    """A factory of the same configs, checked (nas.resources.CheckedSearch: the config and
    the files and models checking it opened; SQLite in tmp_path)."""
    from nas.resources import check_search_config

    return lambda **overrides: check_search_config(raw_config(**overrides), "test")


@pytest.fixture
def searched(search_config):
    """A completed small search in tmp_path/nas.db: its store, its id, and the number of
    its front's first candidate (what an export names)."""
    from nas.pareto import pareto_front
    from nas.search import launch_search
    from nas.store import Store

    config = search_config(algorithm={"population": 8, "generations": 2, "seed": 4})
    store = Store(config.config.database)
    outcome = launch_search(config, store, progress=False)
    return store, outcome.search_id, pareto_front(store, outcome.search_id).front[0].trial
