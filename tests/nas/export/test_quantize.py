"""Deployable exports: int8 ONNX by static post-training quantization, measured in
onnxruntime on the files themselves; float16 ONNX; torch.export's .pt2; the costs of the
shipped int8 file beside the cost model's prediction; errors that leave nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx.reference import ReferenceEvaluator
from sqlalchemy import func, select
from typer.testing import CliRunner

import latency_models as lm
from nas.cli import app
from nas.errors import ExportError
from nas.export import export_candidate, tflite, writers
from nas.export.quantize import onnx_outputs, onnx_session, quantize_int8
from nas.pareto import load_candidates
from nas.search import launch_search
from nas.store import Candidate, Export, Store
from supernet.mbconv.checkpoint import load_supernet
from supernet.mbconv.train import TrainConfig, train_supernet
from supernet.quantization import fake_quantized
from tests.nas.export.test_c_array import GXX, TFLM_ROOT, check_c_array, run_harness


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A supernet trained for two epochs of its largest network on 800 digits (about 40%
    top-1: logits with real margins, so that quantization noise does not decide them), and
    a finished search of it on an MCU and a GPU."""
    out = tmp_path_factory.mktemp("int8")
    config = TrainConfig(
        space="mnist-mbv3",
        data={"kind": "mnist", "limit": 800},
        out_dir=str(out / "supernet"),
        batch_size=32,
        bn_recalibration_images=200,
        phases=[{"name": "largest", "epochs": 2, "lr": 0.1, "warmup_epochs": 0}],
    )
    supernet = load_supernet(train_supernet(config, progress=False).path)
    from nas.resources import check_search_config

    raw = {
        "name": "int8",
        "supernet": str(supernet.path),
        "targets": {
            "stm32f746": {"peak_sram_kb": 64, "flash_kb": 2000},
            "h100-sxm": {"latency_ms": 5, "batch": 64, "precision": "fp16"},
        },
        "algorithm": {"population": 4, "generations": 1, "seed": 0},
        "evaluation": "supernet",
        "database": f"sqlite:///{out / 'nas.db'}",
    }
    search = check_search_config(raw, "test")
    store = Store(search.config.database)
    outcome = launch_search(search, store, progress=False)
    return supernet, store, outcome.search_id, out


def best_candidate(store: Store, search_id: int) -> int:
    """The most accurate candidate. The fixture trains the largest network only, and a
    subnet far from it has logits too flat for bfloat16's tolerance, or for int8's top-1, to
    mean much (argmax flips on rounding)."""
    return max(load_candidates(store, search_id), key=lambda c: c.metrics["top1"]).trial


def exports(store: Store) -> int:
    with store.session() as s:
        return s.scalar(select(func.count()).select_from(Export))


def test_int8_export_is_measured_on_the_files_it_ships(trained, tmp_path):
    supernet, store, search_id, _ = trained
    before = exports(store)
    out = tmp_path / "model"
    formats = "onnx,onnx_int8,onnx_fp16,onnx_bf16,pt2"
    result = export_candidate(store, search_id, best_candidate(store, search_id), formats, out)
    card = result.card
    q = card["quantization"]
    assert set(q["top1"]) == {"fp32", "int8"} and set(q["top1"]["int8"]) == {"val", "test"}
    assert abs(q["top1_drop_points"]["val"]) <= 3  # PTQ of a well-behaved MBConv net
    assert q["size_ratio"] > 2.5  # about 4x: int8 weights, plus scales and int32 biases
    assert q["calibration_images"] == 300 and q["calibration_split"] == "train"
    files = {f: out / Path(p).name for f, p in result.files.items()}
    assert card["deployment"]["onnx_int8"]["bytes"] == files["onnx_int8"].stat().st_size
    mcu = card["deployment"]["mcu"]["stm32f746"]
    assert mcu["flash_kb"]["predicted"] == card["costs"]["stm32f746"]["flash_kb"]
    assert 0.8 < mcu["flash_kb"]["predicted_over_shipped"] < 1.2
    assert 0.8 < mcu["peak_sram_kb"]["predicted_over_shipped"] < 1.25
    assert "h100-sxm" not in card["deployment"]["mcu"]  # a GPU is not costed as an MCU
    assert card["fp16_check"]["max_abs_diff"] <= card["fp16_check"]["allowed"]
    assert card["pt2_check"]["runtime"] == "torch.export.load"
    # bfloat16: a valid opset-22 file whose classes agree with the fp32 file's
    bf16 = card["bf16_check"]
    assert bf16["max_abs_diff"] <= bf16["allowed"] and bf16["opset"] == 22
    model = onnx.load(str(files["onnx_bf16"]))
    weights = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.BFLOAT16]
    assert len(weights) > 10  # the conv weights are stored in bfloat16
    images = supernet.exportable(card["arch"], {}).labelled("val")[0][:64].numpy()
    feed = {model.graph.input[0].name: images}
    (half,) = ReferenceEvaluator(str(files["onnx_bf16"])).run(None, feed)
    full = onnx_outputs(onnx_session(files["onnx"]), images)
    assert half.dtype == np.float32 and np.corrcoef(half.ravel(), full.ravel())[0, 1] > 0.99
    program = torch.export.load(str(files["pt2"])).module()
    x = torch.randn(3, 1, card["arch"]["r"], card["arch"]["r"])
    assert program(x).shape == (3, 10)
    assert exports(store) == before + 1


def test_int8_onnx_agrees_with_fake_quantized_torch(trained, tmp_path):
    """The int8 file in onnxruntime's int8 kernels, the same file run node by node as float
    fake quantization, and torch's own fake quantization (same scheme, same calibration
    images) agree: top-1 within 0.5 points on the validation split."""
    supernet, _, _, _ = trained
    model = supernet.exportable(supernet.space.largest(), {})
    calibration = model.labelled("train")[0][:300]
    images, labels = model.labelled("val")
    fp32, int8 = tmp_path / "model.onnx", tmp_path / "model.int8.onnx"
    writers.write_onnx(model, fp32)
    quantize_int8(fp32, int8, calibration.numpy())
    kernels = onnx_outputs(onnx_session(int8), images.numpy())
    simulated = onnx_outputs(onnx_session(int8, optimized=False), images.numpy())
    with torch.no_grad():
        torch_fake = fake_quantized(model.module, calibration)(images).numpy()

    def top1(logits: np.ndarray) -> float:
        return 100 * float(np.mean(logits.argmax(1) == labels.numpy()))

    assert len(labels) >= 600
    assert np.mean(kernels.argmax(1) == simulated.argmax(1)) >= 0.99
    assert abs(top1(kernels) - top1(simulated)) <= 0.5
    assert abs(top1(kernels) - top1(torch_fake)) <= 0.5
    assert np.corrcoef(kernels.ravel(), torch_fake.ravel())[0, 1] > 0.99
    assert top1(kernels) > 20  # a network that learned something: the comparison means it


def test_corrupt_and_unsupported_models_are_clear_errors(trained, tmp_path):
    _, store, search_id, _ = trained
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not a protobuf at all")
    with pytest.raises(ExportError, match=r"corrupt\.onnx is not a readable ONNX model"):
        quantize_int8(corrupt, tmp_path / "out.onnx", np.zeros((2, 1, 8, 8), np.float32))
    with pytest.raises(ExportError, match="needs calibration images"):
        quantize_int8(corrupt, tmp_path / "out.onnx", np.zeros((0, 1, 8, 8), np.float32))
    with pytest.raises(ExportError, match=r"onnx_int4.*allowed: torchscript, onnx"):
        export_candidate(store, search_id, 0, "onnx_int4", tmp_path / "x")
    runner = CliRunner()
    db = str(store.url)
    result = runner.invoke(
        app, ["export", str(search_id), "0", "--quantize", "int4", "--db", db, "--out", "x"]
    )
    assert result.exit_code == 2 and "--quantize 'int4' is not supported" in result.output


def test_a_failed_quantization_records_nothing_and_leaves_nothing(trained, tmp_path, monkeypatch):
    _, store, search_id, _ = trained
    before = exports(store)

    def refuse(*args, **kwargs):
        raise ExportError("int8 quantization of model.onnx failed: unsupported op")

    monkeypatch.setattr(writers, "quantize_int8", refuse)
    out = tmp_path / "out"
    with pytest.raises(ExportError, match="unsupported op"):
        export_candidate(store, search_id, 0, "onnx,onnx_int8", out)
    assert not out.exists() and not list(tmp_path.iterdir())  # no files, no staging folder
    assert exports(store) == before  # no export recorded


def test_int8_export_from_the_cli_prints_what_the_files_measure(trained, tmp_path):
    _, store, search_id, _ = trained
    out = tmp_path / "cli"
    args = ["export", str(search_id), "1", "--format", "onnx", "--quantize", "int8"]
    args += ["--calibration-images", "100", "--out", str(out), "--db", str(store.url), "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    card = json.loads(result.output.strip().splitlines()[-1])["card"]
    assert card["quantization"]["calibration_images"] == 100
    assert (out / "model.int8.onnx").is_file() and (out / "model.onnx").is_file()


def test_qat_finetune_from_the_cli_and_its_export(trained, tmp_path):
    """`nas finetune --qat` trains the candidate with int8 fake quantization (distilling from
    the largest subnet); `nas export --weights` ships those weights, and the int8 file's
    top-1 in onnxruntime agrees with the fine-tuned weights' torch fake quantization."""
    _, store, search_id, _ = trained
    db = str(store.url)
    out = tmp_path / "ft"
    best = str(best_candidate(store, search_id))
    args = ["finetune", str(search_id), best, "--epochs", "1", "--threshold-points", "0"]
    result = CliRunner().invoke(app, [*args, "--out", str(out), "--db", db, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert report["kind"] == "qat" and len(report["train_loss"]) == 1
    assert isinstance(report["shipped_ptq_drop_points"], float)  # measured on the int8 file
    assert set(report["int8_top1"]) == {"ptq", "after"}
    weights = Path(report["weights"])
    assert weights.is_file() and json.loads((out / "finetune.json").read_text()) == report

    export = tmp_path / "ex"
    args = ["export", str(search_id), best, "--format", "onnx,state_dict", "--quantize", "int8"]
    args += ["--weights", str(weights), "--out", str(export), "--db", db, "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    card = json.loads(result.output.strip().splitlines()[-1])["card"]
    assert card["weights"]["sha256"] == report["weights_sha256"]
    assert card["accuracy"]["measured_top1"]["val"] == pytest.approx(report["fp32_top1"]["after"])
    # the state_dict keeps the subnet's structure: the card's rebuild recipe still applies
    state = torch.load(export / "model.state_dict.pt", weights_only=True)
    supernet = load_supernet(card["checkpoint"]["path"])
    static = supernet.net.extract(state["arch"]).eval()
    static.load_state_dict(state["state_dict"])
    # the int8 file computes what torch's fake quantization of those weights computes, up
    # to where each places its quantization points (SE's Mul, Add). Even the best candidate's
    # logits are nearly flat (a subnet of a supernet trained on its largest net only), so
    # argmax flips easily: the logits must correlate, and top-1 agree within 2 points of 800
    # images (on a trained network: within 0.5, test_int8_onnx_agrees_with_fake_quantized_torch)
    model = supernet.exportable(state["arch"], {}, torch.load(weights, weights_only=True))
    images, labels = model.labelled("val")
    calibration = model.labelled("train")[0][:300]
    kernels = onnx_outputs(onnx_session(export / "model.int8.onnx"), images.numpy())
    with torch.no_grad():
        torch_fake = fake_quantized(static, calibration)(images).numpy()
    assert np.corrcoef(kernels.ravel(), torch_fake.ravel())[0, 1] > 0.9
    torch_top1 = float(np.mean(torch_fake.argmax(1) == labels.numpy()))
    ort_top1 = float(np.mean(kernels.argmax(1) == labels.numpy()))
    assert torch_top1 == pytest.approx(report["int8_top1"]["after"])
    assert card["quantization"]["top1"]["int8"]["val"] == pytest.approx(ort_top1)
    assert abs(100 * (ort_top1 - torch_top1)) <= 2


def test_finetune_skips_a_candidate_ptq_serves_and_refuses_foreign_weights(trained, tmp_path):
    _, store, search_id, _ = trained
    db = str(store.url)
    args = ["finetune", str(search_id), "1", "--threshold-points", "100", "--db", db]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "skip")])
    assert result.exit_code == 0, result.output
    assert "no fine-tuning needed" in result.output
    assert not (tmp_path / "skip" / "finetune.pt").exists()

    float_out = tmp_path / "float"
    args = ["finetune", str(search_id), "1", "--float", "--epochs", "1", "--db", db, "--json"]
    result = CliRunner().invoke(app, [*args, "--out", str(float_out)])
    assert result.exit_code == 0, result.output
    weights = float_out / "finetuned.pt"
    assert json.loads(result.output.strip().splitlines()[-1])["kind"] == "float"
    # candidate 1's weights are not candidate 0's (unless the search found one arch twice)
    with store.session() as s:
        archs = dict(s.execute(select(Candidate.trial, Candidate.arch_id)).all())
    if archs[0] != archs[1]:
        with pytest.raises(ExportError, match=r"holds arch .*not this candidate's"):
            export_candidate(store, search_id, 0, "onnx", tmp_path / "x", weights=weights)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"garbage")
    with pytest.raises(ExportError, match=r"--weights .*corrupt\.pt.*cannot read"):
        export_candidate(store, search_id, 1, "onnx", tmp_path / "y", weights=corrupt)
    result = CliRunner().invoke(app, ["finetune", str(search_id), "99", "--db", db])
    assert result.exit_code != 0 and "has no candidate 99" in result.output


@pytest.mark.slow  # 2 min, and the 2 GB converter environment: `make test-all`
def test_tflite_flatbuffers_are_measured_in_litert_and_tflm(trained, tmp_path):
    """`--format tflite --quantize int8` for a search with an MCU target: the fp32 and the
    full-integer flatbuffers, converted in the converter's own environment and measured in
    LiteRT's interpreter, agree with the ONNX files' top-1 measured in onnxruntime (same
    weights, same int8 scheme); the int8 file has no float op left, runs in TFLite Micro
    with LiteRT's outputs, and the card sets TFLM's arena beside the predicted peak SRAM."""
    _, store, search_id, _ = trained
    out = tmp_path / "lite"
    best = str(best_candidate(store, search_id))  # logits with margins: int8 top-1 means much
    args = ["export", str(search_id), best, "--format", "onnx,tflite", "--quantize", "int8"]
    args += ["--calibration-images", "100", "--out", str(out), "--db", str(store.url)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    card = json.loads((out / "model_card.json").read_text())
    lite, onnx_q = card["tflite"], card["quantization"]
    assert {"tflite", "tflite_int8", "onnx_int8"} <= set(card["files"])
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f["path"] for f in card["files"].values()] + ["model_card.json"]
    )  # the .pt2 converted from was not asked for, and is not left behind
    assert lite["io"]["int8"] == {"input": "int8", "output": "int8"}  # what TFLM runs
    assert lite["float_ops"] == {}  # every op computes in int8
    assert lite["fp32_check"]["max_abs_diff"] <= lite["fp32_check"]["allowed"]
    for split in ("val", "test"):
        assert lite["top1"]["fp32"][split] == pytest.approx(
            onnx_q["top1"]["fp32"][split], abs=0.002
        )
        # same scheme, other graphs (the flatbuffer's hard-sigmoid is an ADD and a MUL, each
        # requantized, the ONNX file's one HardSigmoid): on the quick demo's subnets the two
        # agree within 1 point; on this fixture's near-flat logits (about 25% top-1, 800
        # images) argmax flips more, 2.9 points apart
        assert abs(lite["top1"]["int8"][split] - onnx_q["top1"]["int8"][split]) <= 0.04
    assert lite["bytes"]["fp32"] / lite["bytes"]["int8"] > 2
    assert lite["calibration_images"] == 100
    # TFLite Micro ran the file on every validation image, as LiteRT's reference kernels do
    tflm = lite["tflm"]
    agreement = tflm["agreement_with_litert"]
    assert agreement["images"] == len(trained[0].exportable(card["arch"], {}).labelled("val")[1])
    assert agreement["reference_kernels"]["max_abs_diff_lsb"] <= 1
    # LiteRT's default kernels round otherwise, a few LSB off: on the demo's subnets TFLM
    # picks their class for 99-99.8% of the images, on this fixture's near-flat logits 77%
    assert 0.5 < agreement["default_kernels"]["same_class_fraction"] <= 1
    assert 0 < tflm["top1"]["val"] < 1
    arena = tflm["arena_bytes"]
    assert arena["head"] + arena["tail"] == arena["total"] <= tflm["min_arena_bytes"]
    mcu = card["deployment"]["mcu"]["stm32f746"]
    assert mcu["flash_kb_tflite"]["shipped"] > mcu["flash_kb"]["shipped"] * 0.8
    beside = mcu["tflm_arena"]
    assert beside["predicted"] == card["costs"]["stm32f746"]["peak_sram_kb"]
    assert beside["shipped"] == pytest.approx(tflm["min_arena_bytes"] / 1024, abs=1e-3)
    assert beside["total_kb"] == pytest.approx(arena["total"] / 1024, abs=1e-3)
    assert beside["sram_kb"] == 320 and beside["limit_kb"] == 64
    assert beside["over_sram"] is (beside["min_arena_kb"] > 320)
    flagged = [w for w in card["warnings"] if w.startswith("stm32f746: TFLite Micro needs")]
    assert len(flagged) == beside["over_sram"] + beside["over_limit"]
    assert (
        "TFLite Micro vs LiteRT on" in result.output
        and "the int8 flatbuffer in TFLite Micro" in result.output
    )
    for warning in card["warnings"]:
        assert f"warning: {warning}" in result.output.replace("\n", " ")


@pytest.mark.slow  # 1-2 min, and the converter environment: `make test-all`
def test_c_array_export_is_the_int8_flatbuffer_with_a_tflm_harness(trained, tmp_path):
    """`--format c_array` alone: the full-integer flatbuffer it is made from is written and
    run in TFLite Micro, model_data.cc holds that file's exact bytes, main.cc registers the
    ops the file's operators use (read here through the schema's object API, apart from the
    exporter's reader) and gets an arena TFLM runs the file in, and the card lists the
    files and their sizes."""
    from tflite_micro import runtime

    _, store, search_id, _ = trained
    out = tmp_path / "board"
    best = str(best_candidate(store, search_id))
    args = ["export", str(search_id), best, "--format", "c_array", "--calibration-images", "100"]
    result = CliRunner().invoke(app, [*args, "--out", str(out), "--db", str(store.url)])
    assert result.exit_code == 0, result.output
    card = json.loads((out / "model_card.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == [
        "main.cc",
        "model.int8.tflite",
        "model_card.json",
        "model_data.cc",
        "model_data.h",
    ]
    assert {"tflite_int8", "c_array", "c_array_header", "c_array_main"} == set(card["files"])
    flatbuffer = (out / "model.int8.tflite").read_bytes()
    model = runtime.schema_fb.ModelT.InitFromPackedBuf(flatbuffer, 0)
    names = {v: k for k, v in vars(runtime.schema_fb.BuiltinOperator).items() if k.isupper()}

    def op_name(index: int) -> str:
        code = model.operatorCodes[index]
        return names[max(code.builtinCode, code.deprecatedBuiltinCode)]

    ops = sorted({op_name(op.opcodeIndex) for graph in model.subgraphs for op in graph.operators})
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "HARD_SWISH", "FULLY_CONNECTED"} <= set(ops)
    arena = check_c_array(out, flatbuffer, ops)
    array, tflm = card["c_array"], card["tflite"]["tflm"]
    assert (
        array["ops"] == ops and array["resolver"] == f"tflite::MicroMutableOpResolver<{len(ops)}>"
    )
    assert arena == array["arena_bytes"] > tflm["min_arena_bytes"] >= tflm["arena_bytes"]["total"]
    assert card["tflite"]["float_ops"] == {}  # the file a board gets is integer end to end
    # what main.cc does, in TFLM's Python interpreter: the input zero point in, in its arena
    interpreter = runtime.Interpreter.from_bytes(flatbuffer, arena_size=arena)
    given = interpreter.get_input_details(0)
    assert given["dtype"] is np.int8
    (zero_point,) = given["quantization_parameters"]["zero_points"]
    interpreter.set_input(np.full(given["shape"], zero_point, np.int8), 0)
    interpreter.invoke()
    scores = interpreter.get_output(0)
    assert scores.dtype == np.int8 and scores.shape == (1, 10)  # ten digits: a top class
    if TFLM_ROOT and GXX:  # main.cc built as its comment says, and run (see test_c_array)
        printed = run_harness(out)
        assert f"top class {int(scores.argmax())} (int8 score {scores.max()}," in printed
    sizes = card["deployment"]["c_array"]
    assert sizes["files"] == {name: (out / name).stat().st_size for name in sizes["files"]}
    assert sizes["bytes"] == sum(sizes["files"].values()) and len(sizes["files"]) == 3
    assert "C array for TFLite Micro: model_data.cc, model_data.h, main.cc" in result.output


def test_an_mcu_flatbuffer_with_float_ops_left_fails_the_export(trained, tmp_path, monkeypatch):
    """For a search with an MCU target, an int8 flatbuffer that still computes in float is
    not shipped: the export fails in one line naming the ops, and leaves nothing."""
    _, store, search_id, _ = trained
    before = exports(store)

    def converted_with_float_ops(folder, request):
        Path(request["int8"]).write_bytes(b"TFL3")  # never opened: the check comes first
        return {
            "versions": {"litert-torch": "0.10.0"},
            "io": {"int8": {"input": "int8", "output": "int8"}},
            "bytes": {"int8": 4},
            "top1": {"int8": {"val": 0.5, "test": 0.5}},
            "seconds": {"int8": 1.0},
            "calibration_images": 10,
            "float_ops": {"HARD_SWISH": 5, "ADD": 12, "MEAN": 4},
        }

    monkeypatch.setattr(tflite, "_run_worker", converted_with_float_ops)
    out = tmp_path / "mcu"
    args = ["export", str(search_id), "1", "--format", "tflite_int8", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--db", str(store.url)])
    assert result.exit_code != 0
    message = result.output.strip()
    assert len(message.splitlines()) == 1, message
    assert "still computes in float: ADD x12, HARD_SWISH x5, MEAN x4" in message
    assert exports(store) == before and not out.exists()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_tflite_export_without_its_environment_is_a_clear_error(trained, tmp_path, monkeypatch):
    _, store, search_id, _ = trained
    before = exports(store)
    monkeypatch.setenv("NAS_TFLITE_PYTHON", str(tmp_path / "no-such-python"))
    with pytest.raises(ExportError, match="make tflite-env"):
        export_candidate(store, search_id, 0, "tflite", tmp_path / "x")
    assert exports(store) == before and not (tmp_path / "x").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_finetune_on_a_full_temp_disk_is_one_line(trained, tmp_path, monkeypatch):
    """The int8 drop is measured on temporary ONNX files: a disk that cannot take them is one
    error line naming the cause and the file, not a traceback."""
    import errno

    import nas.finetune

    def full(model, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(nas.finetune, "write_onnx", full)
    _, store, search_id, _ = trained
    args = ["finetune", str(search_id), "1", "--db", str(store.url), "--out", str(tmp_path / "f")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: cannot measure the int8 drop: No space left on device")
    assert "model.onnx" in line and not (tmp_path / "f").exists()


@pytest.mark.slow  # a conversion and a TFLM run (1-2 min after the fixture); the converter env
def test_the_tflm_runtime_predicts_what_tflm_records_for_the_exported_file(trained, tmp_path):
    """The MCU model's `runtime="tflm"` against TFLite Micro's own recording of the file
    `nas export` ships: the head (tensor lifetimes, PADs included) exactly; the recorded
    total, the smallest arena the file runs in and the flatbuffer within 5% (the goal of
    issue 31 on held-out subnets)."""
    supernet, store, search_id, _ = trained
    out = tmp_path / "lite"
    args = ["export", str(search_id), "0", "--format", "tflite_int8"]
    args += ["--calibration-images", "50", "--out", str(out), "--db", str(store.url)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    card = json.loads((out / "model_card.json").read_text())
    recorded = card["tflite"]["tflm"]["arena_bytes"]
    hw = lm.load_hardware("stm32f746")
    spec = supernet.space.to_spec(card["arch"], batch=1)
    memory = hw.tflm_memory(lm.SpecBatch.of([spec]))
    assert memory["head"][0] == recorded["head"]
    assert memory["allocated"][0] == pytest.approx(recorded["total"], rel=0.05)
    assert memory["arena"][0] == pytest.approx(card["tflite"]["tflm"]["min_arena_bytes"], rel=0.05)
    predicted = hw.predict(spec, runtime="tflm")
    assert predicted["peak_sram_kb"] == pytest.approx(
        memory["arena"][0] / 1024 + hw.runtime_sram_kb
    )
    shipped_kb = card["tflite"]["bytes"]["int8"] / 1024 + hw.tflm.runtime_flash_kb
    assert predicted["flash_kb"] == pytest.approx(shipped_kb, rel=0.05)


def test_the_default_converter_environment_is_where_make_tflite_env_puts_it():
    """`make tflite-env` makes .venv-tflite beside the Makefile, at the repository's root."""
    from nas.export.tflite import DEFAULT_ENV

    assert (DEFAULT_ENV.parent / "Makefile").is_file()
    assert ".venv-tflite" in (DEFAULT_ENV.parent / "Makefile").read_text()
