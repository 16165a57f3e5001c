"""The Anycost GAN space, generator, discriminator, training, evaluation and its CLI."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import supernet
from nas.cli import app
from supernet import InvalidArchError
from supernet.anycost.discriminator import ConditionalDiscriminator
from supernet.anycost.evaluate import load_gan
from supernet.anycost.train import GanTrainConfig, train_gan
from supernet.errors import ConfigError
from supernet.io import read_checkpoint
from supernet.run import TrainingInterrupted

SPACE = "anycost-gan-mnist"


@pytest.fixture(scope="module")
def space():
    return supernet.get_space(SPACE)


@pytest.fixture(scope="module")
def generator(space):
    torch.manual_seed(0)
    g = supernet.build(space).eval()
    with torch.no_grad():
        for layer in g.layers:
            layer.noise_strength.fill_(0.1)
            layer.bias.normal_(0, 0.1)
    return g


# ----- the space ----------------------------------------------------------------------------


def test_layers_and_widths(space):
    assert [layer.name for layer in space.layers] == [
        "4.conv",
        "8.conv0",
        "8.conv1",
        "16.conv0",
        "16.conv1",
        "32.conv0",
        "32.conv1",
    ]
    assert space.channels(space.uniform(0.25)) == [32, 32, 32, 16, 16, 8, 8]


def test_round_trips_ids_and_genes(space):
    rng = np.random.default_rng(0)
    for _ in range(100):
        arch = space.sample(rng)
        assert space.from_json(json.dumps(arch)) == arch
        assert space.from_genes(space.to_genes(arch)) == arch
        assert space.encode(arch).shape == (space.encoding_size,)
    low = space.uniform(0.5, 8)
    other = dict(low, ch=[0.5, 0.5, 0.5, 1.0, 1.0, 1.0, 1.0])  # layers above 8 px do not run
    assert space.arch_id(other) == space.arch_id(low)


def test_sampling_reaches_every_choice(space):
    rng = np.random.default_rng(1)
    seen_res, seen = set(), [set() for _ in space.layers]
    uniform = flexible = 0
    for _ in range(2000):
        arch = space.sample(rng)
        seen_res.add(arch["res"])
        active = [r for i, r in enumerate(arch["ch"]) if space.active(arch, i)]
        uniform += len(set(active)) == 1
        flexible += len(set(active)) > 1
        for i, r in enumerate(arch["ch"]):
            if space.active(arch, i):
                seen[i].add(r)
    assert seen_res == set(space.config.resolutions)
    assert all(s == set(space.config.ratios) for s in seen)
    assert uniform > 600 and flexible > 600


def test_genetic_operators(space):
    rng = np.random.default_rng(2)
    for _ in range(50):
        a, b = space.sample(rng), space.sample(rng)
        assert space.validate(space.mutate(a, rng, 0.3))
        child = space.crossover(a, b, rng)
        assert child["res"] in (a["res"], b["res"])
    assert space.mutate(a, rng, 0.0) == a


@pytest.mark.parametrize(
    ("arch", "field", "message"),
    [
        ([1], "<arch>", "expected a JSON object"),
        ({"ch": [1.0] * 7}, "res", "missing field"),
        ({"ch": [1.0] * 7, "res": 32, "w": 1}, "w", "unknown field"),
        ({"ch": [1.0] * 6, "res": 32}, "ch", "expected 7 entries"),
        ({"ch": [1.0] * 6 + [0.3], "res": 32}, "ch", "value 0.3 is not allowed"),
        ({"ch": [1.0] * 6 + ["1"], "res": 32}, "ch", "is not a number"),
        ({"ch": [1.0] * 7, "res": 64}, "res", "value 64 is not allowed"),
        ({"ch": [1.0] * 7, "res": 16.0}, "res", "not an integer"),
    ],
)
def test_validation_errors(space, arch, field, message):
    with pytest.raises(InvalidArchError, match=message) as info:
        space.validate(arch)
    assert info.value.field == field


def test_spec_costs_grow_with_channels_and_resolution(space):
    macs = [space.to_spec(space.uniform(r)).macs for r in (0.25, 0.5, 0.75, 1.0)]
    assert macs == sorted(macs) and macs[0] < macs[-1] / 8
    assert space.to_spec(space.uniform(1.0, 16)).macs < space.to_spec(space.uniform(1.0)).macs
    spec = space.to_spec(space.uniform(0.5, 16))
    assert spec.output_shape == (1, 16, 16) and spec.input_shape == (64, 1, 1)


# ----- generator and discriminator ----------------------------------------------------------


def test_extraction_equals_the_generator(space, generator):
    rng = np.random.default_rng(3)
    z = torch.randn(3, space.config.z_dim)
    for arch in [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(12)]:
        generator.set_active(arch)
        static = generator.extract(arch).eval()
        with torch.no_grad():
            expected, got = generator(z, random_noise=False), static(z)
        assert got.shape == (3, 1, arch["res"], arch["res"])
        assert (expected - got).abs().max().item() <= 1e-5
        stored = sum(p.numel() for p in static.parameters()) + sum(
            b.numel() for name, b in static.named_buffers() if name.endswith("demod")
        )
        noise_strengths = sum(len(stage.convs) for stage in static.stages)
        assert stored - noise_strengths == space.to_spec(arch).params


def test_generator_exports_to_torchscript_and_onnx(space, generator, tmp_path):
    arch = space.uniform(0.5, 16)
    static = generator.extract(arch).eval()
    z = torch.randn(2, space.config.z_dim)
    scripted = torch.jit.script(static)
    with torch.no_grad():
        assert torch.allclose(scripted(z), static(z), atol=1e-6)
    program = torch.onnx.export(
        static,
        (z,),
        dynamo=True,
        verbose=False,
        input_names=["latent"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
    )
    program.save(str(tmp_path / "g.onnx"))
    session = ort.InferenceSession(str(tmp_path / "g.onnx"))
    z5 = torch.randn(5, space.config.z_dim)
    (image,) = session.run(None, {"latent": z5.numpy()})
    with torch.no_grad():
        assert np.abs(image - static(z5).numpy()).max() < 1e-4


def test_channel_sorting_keeps_the_function(space):
    torch.manual_seed(4)
    g = supernet.build(space).eval()
    z = torch.randn(4, space.config.z_dim)
    with torch.no_grad():
        before = g(z, random_noise=False)
        g.sort_channels()
        after = g(z, random_noise=False)
    assert torch.allclose(before, after, atol=1e-4)
    importance = g.layers[2].conv.weight.abs().sum(dim=(1, 2, 3))
    assert torch.all(importance[:-1] >= importance[1:])


def test_discriminator_is_multiresolution_and_conditioned(space):
    torch.manual_seed(5)
    d = ConditionalDiscriminator(space)
    with torch.no_grad():
        d.cond[-1].weight.normal_(0, 0.5)
    x = torch.randn(4, 1, 16, 16)
    a = d(x, torch.from_numpy(space.encode(space.uniform(1.0, 16))))
    b = d(x, torch.from_numpy(space.encode(space.uniform(0.25, 16))))
    assert a.shape == (4,) and not torch.allclose(a, b)
    for res in space.config.resolutions:
        code = torch.from_numpy(space.encode(space.uniform(1.0, res)))
        assert d(torch.randn(2, 1, res, res), code).shape == (2,)
    with pytest.raises(ValueError, match="no from-RGB layer for 4x4"):
        d(torch.randn(2, 1, 4, 4), code)


# ----- training, evaluation, CLI -------------------------------------------------------------


def tiny(out_dir, **overrides) -> GanTrainConfig:
    fields = {
        "out_dir": str(out_dir),
        "data": {"kind": "mnist", "limit": 32},
        "batch_size": 16,
        "threads": 2,
        "feature_net_epochs": 1,
        "stage1_epochs": 1,
        "stage2_epochs": 2,
        "eval_samples": 16,
    }
    return GanTrainConfig(**{**fields, **overrides})


@pytest.fixture(scope="module")
def tiny_gan(tmp_path_factory):
    return train_gan(tiny(tmp_path_factory.mktemp("gan")), progress=False)


def test_short_run_writes_generator_grid_and_history(tiny_gan):
    assert [h["stage"] for h in tiny_gan.history] == [1, 2, 2]
    assert {"fid_1.0x", "fid_0.5x", "fid_0.25x", "consistency_0.5x"} <= set(tiny_gan.final)
    assert all(np.isfinite(v) for v in tiny_gan.final.values())
    grid = Image.open(tiny_gan.out_dir / "samples.png")
    rows = 4 + 2  # four uniform ratios, then full width at 16 and 8 px
    assert grid.size == (8 * 32 * 3, rows * 32 * 3)
    trained = load_gan(tiny_gan.path)
    assert trained.sha256 == tiny_gan.sha256 and trained.space.name == SPACE
    # what is saved is the moving average of the generator, restarted at stage 2
    state = read_checkpoint(tiny_gan.out_dir / "checkpoint.pt", "nas-gan-train-state/1")
    saved = read_checkpoint(tiny_gan.path, "nas-anycost-gan/1")["generator"]
    assert state["ema_steps"] == 4  # two stage-2 epochs of two steps
    assert all(torch.equal(saved[k], v) for k, v in state["g_ema"].items())
    assert not all(torch.equal(saved[k], v) for k, v in state["generator"].items())
    result = trained.evaluator(samples=16).evaluate(trained.space.uniform(0.5, 16))
    assert result.fid >= 0 and result.consistency >= 0 and result.resolution == 16


def test_killed_and_resumed_gan_run_is_exact(tmp_path):
    unbroken = train_gan(tiny(tmp_path / "a"), progress=False)
    config = tiny(tmp_path / "b")
    for stop in (3, 5):  # in stage 1, then after the channel sort in stage 2
        with pytest.raises(TrainingInterrupted):
            train_gan(config, resume=True, progress=False, stop_after_steps=stop)
    resumed = train_gan(config, resume=True, progress=False)
    a = read_checkpoint(unbroken.path, "nas-anycost-gan/1")["generator"]
    b = read_checkpoint(resumed.path, "nas-anycost-gan/1")["generator"]
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_gan_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not a GAN space"):
        train_gan(tiny(tmp_path, space="mnist-mbv3"), progress=False)
    bad = tmp_path / "bad.yaml"
    bad.write_text("stage1_epochs: -1\n")
    from supernet.anycost.train import load_gan_config

    with pytest.raises(ConfigError, match="stage1_epochs"):
        load_gan_config(bad)


def test_gan_cli(tiny_gan, tmp_path):
    runner = CliRunner()
    run = tiny_gan.out_dir
    result = runner.invoke(
        app, ["gan", "eval", "-c", str(run), "--uniform", "0.5", "--samples", "16", "--json"]
    )
    assert result.exit_code == 0, result.output
    row = json.loads(result.output.strip().splitlines()[-1])
    assert row["arch"]["ch"][0] == 0.5 and row["fid"] >= 0
    grid = tmp_path / "grid.png"
    result = runner.invoke(
        app,
        [
            "gan",
            "samples",
            "-c",
            str(run),
            "--out",
            str(grid),
            "--arch",
            "largest",
            "--columns",
            "4",
        ],
    )
    assert result.exit_code == 0 and Image.open(grid).size == (4 * 96, 96)
    missing = runner.invoke(app, ["gan", "eval", "-c", str(tmp_path / "nope")])
    assert missing.exit_code == 2


def test_gan_search_pareto_and_export_from_the_cli(tiny_gan, tmp_path):
    """The GAN space plugs into the search service: FID against MCU latency under limits."""
    import yaml

    runner = CliRunner()
    db = f"sqlite:///{tmp_path / 'nas.db'}"
    config = {
        "name": "gan-search",
        "supernet": str(tiny_gan.path),
        "objectives": [
            {"metric": "fid", "goal": "minimize"},
            {"metric": "stm32h743.latency_ms", "goal": "minimize"},
        ],
        "targets": {
            "stm32h743": {"peak_sram_kb": 256, "latency_ms": 400},
            "h100-sxm": {"latency_ms": 1.0, "batch": 16, "precision": "fp16"},
        },
        "algorithm": {"population": 6, "generations": 2, "seed": 0},
        "evaluation": "supernet",
        "database": db,
    }
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(config))
    launched = runner.invoke(app, ["search", "launch", str(path), "--json"])
    assert launched.exit_code == 0, launched.output
    outcome = json.loads(launched.output.strip().splitlines()[-1])
    assert outcome["status"] == "completed" and outcome["candidates"] == 12

    front = runner.invoke(app, ["pareto", str(outcome["search_id"]), "--db", db, "--json"])
    assert front.exit_code == 0, front.output
    rows = json.loads(front.output.strip().splitlines()[-1])["front"]
    assert rows and [r["fid"] for r in rows] == sorted(r["fid"] for r in rows)
    for row in rows:
        assert row["stm32h743.peak_sram_kb"] <= 256
        assert row["stm32h743.latency_ms"] <= 400

    mcu = runner.invoke(
        app,
        ["pareto", str(outcome["search_id"]), "--db", db, "--json", "--target", "stm32h743"],
    )
    assert mcu.exit_code == 0, mcu.output
    mcu_front = json.loads(mcu.output.strip().splitlines()[-1])
    assert [o["metric"] for o in mcu_front["objectives"]] == ["fid", "stm32h743.latency_ms"]

    best = rows[0]
    out = tmp_path / "export"
    exported = runner.invoke(
        app,
        [
            "export",
            str(outcome["search_id"]),
            str(best["candidate"]),
            "--db",
            db,
            "--out",
            str(out),
            "--json",
        ],
    )
    assert exported.exit_code == 0, exported.output
    card = json.loads((out / "model_card.json").read_text())
    # the default formats; no int8 file for a generator, whose MCU target still runs int8:
    # there are no labelled images to calibrate and measure it on
    assert set(card["files"]) >= {"torchscript", "pt2", "onnx", "state_dict"}
    assert "onnx_int8" not in card["files"]
    assert "no labelled images" in card["deployment"]["onnx_int8"]["skipped"]
    assert (
        card["kind"] == "gan"
        and card["onnx_check"]["max_abs_diff"] <= card["onnx_check"]["allowed"]
    )
    assert card["quality"]["measured"]["fid"] == pytest.approx(best["fid"], rel=1e-6)
    latent = torch.randn(3, 64)
    scripted = torch.jit.load(str(out / "model.torchscript.pt"))
    session = ort.InferenceSession(str(out / "model.onnx"))
    (image,) = session.run(None, {"latent": latent.numpy()})
    res = best["arch"]["res"]
    assert image.shape == (3, 1, res, res)
    with torch.no_grad():
        assert np.abs(scripted(latent).numpy() - image).max() < 1e-4
    assert Image.open(out / "samples.png").size[1] == 32 * 3


def test_gan_search_config_refuses_a_predictor(tiny_gan, tmp_path):
    from nas.config import SearchConfigError
    from nas.resources import check_search_config

    raw = {
        "supernet": str(tiny_gan.path),
        "targets": {"stm32h743": {"latency_ms": 400}},
        "evaluation": "predictor",
        "predictor": "p.pt",
        "database": f"sqlite:///{tmp_path / 'nas.db'}",
    }
    with pytest.raises(SearchConfigError, match="is a GAN"):
        check_search_config(raw, "gan")
    with pytest.raises(SearchConfigError, match="unknown metric 'top1'"):
        check_search_config(
            {
                **raw,
                "evaluation": "supernet",
                "predictor": None,
                "objectives": [{"metric": "top1", "goal": "maximize"}],
            },
            "gan",
        )
    default = check_search_config({**raw, "evaluation": "supernet", "predictor": None}, "gan")
    assert [o.metric for o in default.config.objectives] == ["fid", "stm32h743.latency_ms"]
