"""`nas latency`: predict, measure, calibrate, build-lut, validate, fit, on this CPU.

The timings here are tiny (few runs of MNIST-sized subnets at resolution 12): they test the
commands, not the machine.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import latency_models as lm
import supernet
from nas.cli import app

runner = CliRunner()
FAST = ("--warmup", "1", "--repeats", "2", "--rounds", "1")
# what a calibration is fitted on: the fastest of 30 interleaved runs of each subnet, since
# another process on the machine only ever adds time (a median of 2 followed the load)
STEADY = ("--warmup", "2", "--repeats", "10", "--rounds", "3", "--statistic", "min")
TINYENGINE = str(Path(lm.PROFILE_DIR) / "mcu" / "tinyengine-stm32h743.csv")


def run(*args: str):
    return runner.invoke(app, list(args))


def read_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.read_text().splitlines()))


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> Path:
    """12 MNIST subnets at r=12, timed on this CPU."""
    path = tmp_path_factory.mktemp("latency") / "m.csv"
    result = run(
        "latency", "measure", "--device", "cpu", "--space", "mnist-mbv3", "--n", "12",
        "-r", "12", *STEADY, "--out", str(path),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return path


def test_predict_table_and_json():
    args = ("latency", "predict", "-H", "stm32h743", "-H", "a100-sxm", "-s", "mcu-mbv2")
    result = run(*args, "--arch", "smallest")
    assert result.exit_code == 0, result.output
    assert "peak_sram_kb" in result.output and "a100-sxm" in result.output
    lines = run(*args, "--arch", "smallest", "--json", "--batch", "8").output.splitlines()
    costs = [json.loads(line) for line in lines]
    assert costs[0]["hardware"] == "stm32h743" and costs[1]["latency_ms"] > 0


def test_predict_prints_intervals_and_json_carries_the_bounds():
    args = ("latency", "predict", "-H", "stm32h743", "-H", "v100-sxm2", "-s", "mcu-mbv2",
            "-a", "smallest", "--batch", "64")  # fmt: skip
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert "(90%: " in result.output and "(exact)" in result.output
    mcu, gpu = (json.loads(line) for line in run(*args, "--json").output.splitlines())
    assert mcu["peak_sram_kb_low"] == mcu["peak_sram_kb"] == mcu["peak_sram_kb_high"]
    assert gpu["latency_ms_low"] < gpu["latency_ms"] < gpu["latency_ms_high"]
    half = json.loads(run(*args, "--json", "--coverage", "0.5").output.splitlines()[1])
    assert gpu["latency_ms_low"] <= half["latency_ms_low"] < half["latency_ms_high"]
    assert half["latency_ms_high"] <= gpu["latency_ms_high"]
    result = run(*args, "--coverage", "1.5")
    assert result.exit_code == 2 and "coverage" in result.output


def test_predict_errors_exit_2():
    result = run("latency", "predict", "-H", "a100-sxm", "-s", "mcu-mbv2", "-a", "smallest",
                 "--precision", "fp8")  # fmt: skip
    assert result.exit_code == 2 and "no fp8 support" in result.output
    result = run("latency", "predict", "-H", "nope", "-s", "mcu-mbv2", "-a", "smallest")
    assert result.exit_code == 2 and "unknown hardware 'nope'" in result.output


def test_measure_writes_rows(measured):
    rows = read_rows(measured)
    assert len(rows) == 12
    assert {r["space"] for r in rows} == {"mnist-mbv3"} and rows[0]["device"] == "cpu"
    assert all(float(r["latency_ms"]) > 0 for r in rows)
    assert all(json.loads(r["arch"])["r"] == 12 for r in rows)
    assert rows[0]["statistic"] == "min"  # --statistic picks the column that latency_ms is
    assert rows[0]["latency_ms"] == rows[0]["latency_min_ms"]
    assert float(rows[0]["latency_min_ms"]) <= float(rows[0]["latency_median_ms"])


def test_predict_in_a_software_stack():
    args = ("latency", "predict", "-H", "a100-sxm", "-s", "mnist-mbv3", "--arch", "smallest")
    by_stack = run(*args, "--stack", "pytorch-2-compiled", "--json")
    by_runtime = run(*args, "--runtime", "compiled", "--json")
    assert by_stack.exit_code == 0, by_stack.output
    assert json.loads(by_stack.output) == json.loads(by_runtime.output)
    old = json.loads(run(*args, "--stack", "pytorch-1-7-ngc20-10", "--json").output)
    assert old["latency_ms"] > json.loads(run(*args, "--json").output)["latency_ms"]
    bad = run(*args, "--stack", "pytorch-0")
    assert bad.exit_code == 2 and "unknown stack 'pytorch-0'; allowed: " in bad.output


def test_measure_cuda_without_gpu_is_an_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    result = run("latency", "measure", "--device", "cuda", "-s", "mnist-mbv3", "--n", "1")
    assert result.exit_code == 2 and "torch sees no CUDA GPU" in result.output
    result = run("latency", "measure", "--device", "cpu", "--precision", "fp16", "-s",
                 "mnist-mbv3", "--n", "1")  # fmt: skip
    assert result.exit_code == 2 and "allowed: fp32" in result.output


def test_calibrate_a_gpu_profile_on_cpu_measurements(measured, tmp_path):
    out = tmp_path / "cpu-roofline.yaml"
    result = run("latency", "calibrate", "-H", "a100-sxm", "-m", str(measured), "-o", str(out))
    assert result.exit_code == 0, result.output
    hw = lm.load_hardware(str(out))
    assert hw.kind == "gpu" and hw.name == "cpu-roofline"
    cal = hw.profile["calibration"]
    assert cal["rows"] == 12
    # the prior (an A100 at batch 1, launch-bound) can already sit near these tiny CPU
    # timings; the fit must then stay near them, else improve on them
    after, before = cal["mape_after"]["latency_ms_mape"], cal["mape_before"]["latency_ms_mape"]
    assert after <= max(before, 0.25)


def test_calibrate_the_mcu_on_tinyengine(tmp_path):
    out = tmp_path / "mcu.yaml"
    result = run("latency", "calibrate", "-H", "stm32h743", "-m", TINYENGINE, "-o", str(out))
    assert result.exit_code == 0, result.output
    cal = lm.load_hardware(str(out)).profile["calibration"]
    assert cal["mape_after"]["peak_sram_kb_mape"] < 0.02
    assert cal["mape_after"]["flash_kb_mape"] < 0.01


def test_calibrate_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("space,arch,seconds\nmnist-mbv3,{},1\n")
    result = run("latency", "calibrate", "-H", "a100-sxm", "-m", str(bad), "-o", "x.yaml")
    assert result.exit_code == 2 and "no measured column" in result.output
    bad.write_text('space,arch,latency_ms\nmnist-mbv3,"{""ks"": [4]}",1\n')
    result = run("latency", "calibrate", "-H", "a100-sxm", "-m", str(bad), "-o", "x.yaml")
    assert result.exit_code == 2 and "line 2: column arch" in result.output
    result = run("latency", "calibrate", "-H", "a100-sxm", "-m", "/no/file.csv", "-o", "x.yaml")
    assert result.exit_code == 2 and "does not exist" in result.output
    result = run("latency", "calibrate", "-H", "note10", "-m", TINYENGINE, "-o", "x.yaml")
    assert result.exit_code == 2


def test_build_lut_validate_and_fit(measured, tmp_path):
    profile = tmp_path / "local.yaml"
    result = run(
        "latency", "build-lut", "--device", "cpu", "-s", "mnist-mbv3", "-r", "12",
        "--calibrate", "4", *FAST, "--out", str(profile),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    hw = lm.load_hardware(str(profile))
    assert hw.kind == "measured" and len(hw.calibration["arch_ids"]) == 4
    assert hw.measurement["threads"] == 1 and hw.measurement["spaces"] == ["mnist-mbv3"]

    learned = tmp_path / "gbdt.yaml"
    result = run("latency", "fit", "-m", str(measured), "-o", str(learned), "--trees", "20")
    assert result.exit_code == 0, result.output
    assert lm.load_hardware(str(learned)).kind == "learned"

    png, saved = tmp_path / "v.png", tmp_path / "v.csv"
    result = run(
        "latency", "validate", "-H", str(profile), "-H", str(learned), "-s", "mnist-mbv3",
        "--n", "4", "-r", "12", "--repeats", "2", "--rounds", "1", "--plot", str(png),
        "--save", str(saved),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "within ±10%" in result.output and "gbdt" in result.output
    assert png.stat().st_size > 1000 and len(read_rows(saved)) == 4
    # validation subnets exclude the calibration and training subnets
    ids = {r["arch_id"] for r in read_rows(saved)}
    assert not ids & set(hw.calibration["arch_ids"])
    assert not ids & {r["arch_id"] for r in read_rows(measured)}

    again = run("latency", "validate", "-H", str(profile), "-s", "mnist-mbv3", "--measurements",
                str(saved), "--json")  # fmt: skip
    assert again.exit_code == 0, again.output
    figures = json.loads(again.output)
    assert figures["n"] == 4 and 0 <= figures["within_10pct"] <= 1 and "kendall_tau" in figures

    missing = run("latency", "validate", "-H", str(profile), "-s", "mnist-mbv3", "--n", "2",
                  "-r", "16", "--repeats", "1", "--rounds", "1")  # fmt: skip
    assert missing.exit_code == 2 and "no entry for" in missing.output


def test_build_lut_and_validate_for_a_generator_space(tmp_path):
    """Generator blocks read tensors from outside the block (the style vector, the previous
    image); they are timed with those held fixed, and whole sub-generators run end to end."""
    space = supernet.get_space("anycost-gan-mnist")
    profile = tmp_path / "gan-cpu.yaml"
    result = run(
        "latency", "build-lut", "--device", "cpu", "-s", space.name, "-r", "8",
        "--calibrate", "3", *FAST, "--out", str(profile), "--name", "gan-cpu",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    hw = lm.load_hardware(str(profile))
    kinds = {key.split("-")[0] for key in hw.tables[1]}
    assert kinds == {"mapping", "modulated_conv", "to_rgb"}
    for arch in (space.uniform(0.25, 8), {"ch": [1.0, 0.5, 0.75] + [0.25] * 4, "res": 8}):
        assert hw.predict(space.to_spec(arch))["latency_ms"] > 0
    checked = run("latency", "validate", "-H", str(profile), "-s", space.name, "--n", "3",
                  "-r", "8", "--repeats", "2", "--rounds", "1", "--json")  # fmt: skip
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.output)["n"] == 3


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", "x.yaml", "/abs", "", "a\\b"])
def test_build_lut_refuses_a_name_that_is_a_path(name, tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_PROFILE_DIR", str(tmp_path / "profiles"))
    monkeypatch.chdir(tmp_path)
    shipped = sorted(p.name for p in Path(lm.PROFILE_DIR).iterdir())
    result = run("latency", "build-lut", "--device", "cpu", "-s", "mnist-mbv3", "--name", name)
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: profile name")
    assert (
        not any(tmp_path.rglob("*"))
        and sorted(p.name for p in Path(lm.PROFILE_DIR).iterdir()) == shipped
    )


def test_build_lut_writes_to_the_user_profile_folder(tmp_path, monkeypatch):
    folder = tmp_path / "my-profiles"
    monkeypatch.setenv("NAS_PROFILE_DIR", str(folder))
    shipped = sorted(p.name for p in Path(lm.PROFILE_DIR).iterdir())
    result = run(
        "latency", "build-lut", "--device", "cpu", "-s", "mnist-mbv3", "-r", "12",
        "--calibrate", "0", *FAST, "--name", "my-cpu",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (folder / "my-cpu.yaml").is_file() and f"wrote {folder / 'my-cpu.yaml'}" in result.output
    assert sorted(p.name for p in Path(lm.PROFILE_DIR).iterdir()) == shipped
    hw = lm.load_hardware("my-cpu")  # by name: the user folder is searched first
    assert hw.kind == "measured" and lm.hardware_path("my-cpu") == folder / "my-cpu.yaml"
    assert "my-cpu" in lm.list_hardware() and "h100-sxm" in lm.list_hardware()
    monkeypatch.delenv("NAS_PROFILE_DIR")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(lm.UnknownHardwareError):
        lm.load_hardware("my-cpu")


# ----- GPU profiles: adapting to a device from a few measurements ------------------------------

PUBLIC = Path(lm.PROFILE_DIR) / "gpu" / "public"


def public_rows(file: str, **where: str) -> list[dict[str, str]]:
    rows = read_rows(PUBLIC / file)
    return [r for r in rows if all(r[k] == v for k, v in where.items())]


def write_measurements(rows: list[dict[str, str]], path: Path) -> Path:
    fields = ("network", "resolution", "batch", "precision", "runtime", "layout", "latency_ms")
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_adapt_a_profile_to_another_gpu_and_validate_it_on_other_networks(tmp_path):
    """The RTX 4090 profile adapted on 20 networks timed on an RTX 3090 (timm's public
    table) predicts 3090 timings of other networks better than before."""
    rows = public_rows(
        "timm-rtx3090.csv", framework="pytorch-2.4.0-cu124-amp", layout="nhwc", runtime="eager"
    )
    networks = sorted({r["network"] for r in rows})
    few = [next(r for r in rows if r["network"] == n) for n in networks[::4][:20]]
    others = [r for r in rows if r["network"] not in {f["network"] for f in few}][:40]
    few_csv = write_measurements(few, tmp_path / "few.csv")
    check_csv = write_measurements(others, tmp_path / "check.csv")
    out = tmp_path / "my-3090.yaml"
    result = run("latency", "adapt", "-H", "rtx4090", "-m", str(few_csv), "-o", str(out), "--json")
    assert result.exit_code == 0, result.output
    fitted = json.loads(result.output)
    assert fitted["after"]["mape"] < fitted["before"]["mape"]
    adapted = lm.load_hardware(str(out))
    assert adapted.profile["calibration"]["adapted_from"] == "rtx4090"
    assert adapted.peak_tflops == lm.load_hardware("rtx4090").peak_tflops  # the base's datasheet
    result = run(
        "latency", "validate", "-H", "rtx4090", "-H", str(out), "--measurements", str(check_csv),
        "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    before, after = (json.loads(line) for line in result.output.splitlines())
    assert after["mape"] < before["mape"] and after["n"] == len(others)
    assert after["kendall_tau"] > after["macs_kendall_tau"]  # better than ranking by MACs


def test_adapting_to_a_gpu_with_faster_memory_than_the_base_fits_its_bandwidth(tmp_path):
    """An RTX 5090 (1,792 GB/s) from the RTX 4090's profile (1,008 GB/s): the adapted
    profile's bandwidth passes the base's, which a memory efficiency (at most 1) cannot."""
    rows = public_rows("timm-rtx5090.csv", runtime="eager")
    networks = sorted({r["network"] for r in rows})
    few = [next(r for r in rows if r["network"] == n) for n in networks[::3][:20]]
    others = [r for r in rows if r["network"] not in {f["network"] for f in few}]
    few_csv = write_measurements(few, tmp_path / "few.csv")
    check_csv = write_measurements(others, tmp_path / "check.csv")
    out = tmp_path / "my-5090.yaml"
    result = run("latency", "adapt", "-H", "rtx4090", "-m", str(few_csv), "-o", str(out), "--json")
    assert result.exit_code == 0, result.output
    assert (
        lm.load_hardware(str(out)).bandwidth_gbs > 1.2 * lm.load_hardware("rtx4090").bandwidth_gbs
    )
    result = run("latency", "validate", "-H", str(out), "--measurements", str(check_csv), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["within_10pct"] > 0.5


def test_adapting_the_stack_alone_finds_a_host_slower_than_the_base_profiles(tmp_path):
    """An A100 timed by a harness that copies each batch to the GPU (PyTorch 1.7, ~30 us of
    host time per kernel), adapted from the A100's own profile with `--only stack`: at the
    default stack's host cost (about 6 us) the host hides behind the GPU and gives the fit no
    gradient; its restarts find the slower host, and the device keeps its parameters."""
    rows = public_rows("ryujaehun-a100.csv", precision="fp16")
    out = tmp_path / "my-a100.yaml"
    few_csv = write_measurements(rows[::2], tmp_path / "few.csv")
    result = run(
        "latency", "adapt", "-H", "a100-sxm", "--only", "stack", "-m", str(few_csv),
        "-o", str(out), "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    base = lm.load_hardware("a100-sxm")
    adapted = lm.load_hardware(str(out))
    stack = base.default_stack  # the rows name no stack: the base's default, adapted
    assert adapted.default_stack == stack
    assert adapted.stacks[stack].op_overhead_us > 2 * base.stacks[stack].op_overhead_us
    assert adapted.efficiency == base.efficiency
    assert adapted.memory_efficiency == base.memory_efficiency
    fitted = json.loads(result.output)
    assert fitted["after"]["mape"] < 0.6 * fitted["before"]["mape"]
    bad = run("latency", "adapt", "-H", "a100-sxm", "--only", "host", "-m", str(few_csv),
              "-o", str(out))  # fmt: skip
    assert bad.exit_code != 0 and "only: value 'host' is not allowed" in bad.output


def test_measurement_rows_name_their_network_clearly(tmp_path):
    bad = write_measurements(
        [{"network": "resnet5O", "batch": 1, "latency_ms": 1.0}], tmp_path / "typo.csv"
    )
    result = run("latency", "adapt", "-H", "rtx4090", "-m", str(bad), "-o", "x.yaml")
    assert result.exit_code == 2
    assert "line 2: column network: unknown reference network 'resnet5O'" in result.output
    bad = write_measurements(
        [{"network": "resnet50", "resolution": "big", "batch": 1, "latency_ms": 1.0}],
        tmp_path / "res.csv",
    )
    result = run("latency", "validate", "-H", "rtx4090", "--measurements", str(bad))
    assert result.exit_code == 2 and "column resolution: 'big'" in result.output
    bad = write_measurements(
        [{"network": "model.onnx", "batch": 1, "latency_ms": 1.0}], tmp_path / "file.csv"
    )
    result = run("latency", "validate", "-H", "rtx4090", "--measurements", str(bad))
    assert result.exit_code == 2 and "model.onnx" in result.output
    result = run("latency", "validate", "-H", "rtx4090")
    assert result.exit_code == 2 and "give --space" in result.output
    rows = [{**public_rows("pycls-v100.csv")[0], "runtime": "onnxruntime"}]
    bad = write_measurements(rows, tmp_path / "runtime.csv")
    result = run("latency", "validate", "-H", "v100-sxm2", "--measurements", str(bad))
    assert result.exit_code == 2 and "unknown runtime 'onnxruntime'" in result.output


def test_gpu_check_script_runs_on_the_cpu(tmp_path):
    """experiments/gpu_check.py is meant for a GPU machine; its CPU mode runs every step."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[3] / "experiments" / "gpu_check.py"
    args = ["--device", "cpu", "--n", "4", "--adapt", "1", "--repeats", "2", "--out", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = [json.loads(line) for line in done.stdout.splitlines() if '"name"' in line]
    assert {f["name"] for f in figures} == {"gpu_check_profile_error", "gpu_check_adapted_error"}
    rows = read_rows(tmp_path / "gpu-measurements.csv")
    assert len(rows) == 8 and all(float(r["latency_ms"]) > 0 for r in rows)


def _one_error_line(result, expected: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert expected in lines[0], lines[0]


def _refuse_constant(text: str) -> None:
    raise ValueError(f"not JSON: {text}")


@pytest.mark.parametrize("command", ["adapt", "calibrate", "validate"])
def test_bad_measurement_files_are_one_error_line(command, tmp_path):
    rows = [
        {"network": n, "batch": 1, "latency_ms": v} for n, v in (("resnet50", 2), ("resnet18", 1))
    ]
    out = tmp_path / "out.yaml"

    def run_on(path: Path):
        if command == "validate":
            return run("latency", "validate", "-H", "rtx4090", "-m", str(path), "--json")
        return run("latency", command, "-H", "rtx4090", "-m", str(path), "-o", str(out))

    infinite = write_measurements([rows[0], {**rows[1], "latency_ms": "inf"}], tmp_path / "i.csv")
    _one_error_line(run_on(infinite), f"{infinite} line 3: column latency_ms: must be finite")
    binary = tmp_path / "b.csv"
    binary.write_bytes(bytes(range(128, 256)) * 4)
    _one_error_line(run_on(binary), f"{binary} is not a UTF-8 CSV file")
    one = write_measurements(rows[:1], tmp_path / "one.csv")
    _one_error_line(run_on(one), f"{one}: 1 measured row; at least 2 are needed")
    assert not out.exists()


def test_validate_and_adapt_json_have_no_nan(tmp_path):
    """Two networks measured equally fast: no Kendall tau (NaN), printed as null."""
    rows = [{"network": n, "batch": 1, "latency_ms": 1.5} for n in ("resnet50", "resnet18")]
    path = write_measurements(rows, tmp_path / "tie.csv")
    result = run("latency", "validate", "-H", "rtx4090", "-m", str(path), "--json")
    assert result.exit_code == 0, result.output
    assert "NaN" not in result.output and "Infinity" not in result.output
    figures = json.loads(result.output, parse_constant=_refuse_constant)
    assert figures["n"] == 2 and figures["kendall_tau"] is None
    assert figures["macs_kendall_tau"] is None and figures["mape"] > 0
    out = tmp_path / "tie.yaml"
    result = run("latency", "adapt", "-H", "rtx4090", "-m", str(path), "-o", str(out), "--json")
    assert result.exit_code == 0, result.output
    assert "NaN" not in result.output and "Infinity" not in result.output
    fitted = json.loads(result.output, parse_constant=_refuse_constant)
    assert fitted["before"]["kendall_tau"] is None and fitted["after"]["mape"] > 0
