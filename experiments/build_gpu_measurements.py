"""Build the public GPU measurement tables that the GPU cost models are calibrated on.

Reads the research copies of public benchmark results (--research, default
/work/research/gpu: timm's results CSVs, NVIDIA DeepLearningExamples READMEs, pycls's model
timings, PaddleClas docs, MLPerf Inference summaries, ryujaehun/pytorch-gpu-benchmark) and
writes one normalized CSV per source into --out (default latency_models/profiles/gpu/public/),
with SOURCE.md describing each. Every kept row names a network that
`latency_models.families.family_spec` builds, measured on a GPU, in one format:

    network,resolution,batch,precision,layout,runtime,latency_ms,gpu,framework,source,commit

latency_ms is the time of one forward pass of one batch. A row whose source publishes the
network's parameter count (or MACs) is kept only if family_spec agrees within 2% (or the
published rounding); a name that family_spec does not know, a CPU, a training run, a
network the tables cannot tie to one family_spec network, and a throughput that is not the
time of one batch are left out and counted in SOURCE.md. Several measurements of one setting
(same GPU, network, resolution, batch, precision, layout, runtime and framework) keep the
first source listed.

    python experiments/build_gpu_measurements.py [--research DIR] [--out DIR]

Prints one JSON object per table written: its file, rows, and dropped rows by reason.
"""

from __future__ import annotations

import argparse
import collections
import csv
import functools
import json
import re
import statistics
from collections.abc import Iterable, Iterator
from dataclasses import astuple, dataclass, field, fields
from pathlib import Path

from latency_models.families import FAMILIES, family_spec, fvcore_macs

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "latency_models" / "profiles" / "gpu" / "public"


@dataclass(frozen=True)
class Row:
    network: str
    resolution: int
    batch: int
    precision: str  # fp32 | tf32 | fp16 | bf16 | int8
    layout: str  # nchw | nhwc
    runtime: str  # eager | compiled | tensorrt
    latency_ms: float  # one forward pass of one batch
    gpu: str
    framework: str
    source: str
    commit: str

    @property
    def key(self) -> tuple:
        return (self.gpu, self.network, self.resolution, self.batch, self.precision,
                self.layout, self.runtime, self.framework)  # fmt: skip


COLUMNS = [f.name for f in fields(Row)]


@dataclass
class Table:
    """One output CSV: its rows, the rows left out (by reason), and its SOURCE.md section."""

    file: str
    title: str
    about: str  # origin, what was measured, licence (markdown)
    rows: list[Row] = field(default_factory=list)
    dropped: collections.Counter = field(default_factory=collections.Counter)
    dropped_names: dict[str, set[str]] = field(default_factory=dict)

    def drop(self, reason: str, name: str = "", n: int = 1) -> None:
        self.dropped[reason] += n
        if name:
            self.dropped_names.setdefault(reason, set()).add(name)

    def add(self, row: Row, params_m: str = "", gmacs: str = "") -> None:
        """Keep `row` if family_spec agrees with the published counts (strings as published)."""
        reason = _mismatch(row.network, row.resolution, params_m, gmacs)
        if reason:
            self.drop(reason, row.network)
        else:
            self.rows.append(row)

    def dedup(self) -> None:
        seen: set[tuple] = set()
        kept = []
        for row in self.rows:
            if row.key in seen:
                self.drop("a second measurement of the same setting (the first is kept)")
                continue
            seen.add(row.key)
            kept.append(row)
        self.rows = sorted(kept, key=_order)


def _order(r: Row) -> tuple:
    return (r.gpu, r.framework, r.precision, r.layout, r.runtime, r.network, r.resolution, r.batch)


# ----- checks against family_spec -----------------------------------------------------------


def _tolerance(published: str) -> float:
    """Half a unit of the last published digit: what rounding alone can explain."""
    decimals = len(published.split(".")[1]) if "." in published else 0
    return 0.5 * 10.0**-decimals


@functools.cache
def _counts_of(network: str, resolution: int) -> tuple[float, float]:
    """family_spec's params (M) and fvcore-style GMACs (timm's `infer_gmacs` convention)."""
    spec = family_spec(network, resolution)
    return spec.params / 1e6, fvcore_macs(spec) / 1e9


def _mismatch(network: str, resolution: int, params_m: str, gmacs: str) -> str:
    params, macs = _counts_of(network, resolution)
    if params_m:
        p = float(params_m)
        if abs(params - p) > max(0.02 * p, _tolerance(params_m)):
            return "published params differ from family_spec by more than 2%"
    if gmacs:
        g = float(gmacs)
        if abs(macs - g) > max(0.02 * g, _tolerance(gmacs)):
            return "published GMACs differ from family_spec by more than 2%"
    return ""


# ----- markdown tables ------------------------------------------------------------------------


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def markdown_tables(
    path: Path,
) -> Iterator[tuple[dict[int, str], str, list[str], list[list[str]], int]]:
    """Each table in a markdown file: (headings by level, the last text line before it,
    header cells without bold markers, body rows, 1-based line of the header)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    headings: dict[int, str] = {}
    label = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^(#+)\s*(.*)", line)
        if m:
            level = len(m.group(1))
            headings = {k: v for k, v in headings.items() if k < level}
            headings[level] = m.group(2).strip()
            label = m.group(2).strip()
        elif (
            line.strip().startswith("|")
            and i + 1 < len(lines)
            and re.match(r"^\s*\|[\s:|-]+\|\s*$", lines[i + 1])
        ):
            header = [c.strip("* ") for c in _cells(line)]
            body = []
            j = i + 2
            while j < len(lines) and lines[j].strip().startswith("|"):
                body.append(_cells(lines[j]))
                j += 1
            yield dict(headings), label, header, body, i + 1
            i = j
            continue
        elif line.strip():
            label = line.strip().strip("*").strip()
        i += 1


def _number(text: str) -> float:
    return float(re.match(r"\s*([0-9.]+)", text).group(1))  # type: ignore[union-attr]


# ----- timm -----------------------------------------------------------------------------------

_TIMM_GPUS = {"rtx3090": "rtx3090", "rtx4090": "rtx4090", "4090": "rtx4090",
              "5090": "rtx5090", "pro6000maxq": "rtx-pro-6000-maxq"}  # fmt: skip
_TIMM_GPU_NAMES = {
    "rtx3090": "GeForce RTX 3090 (24 GB)",
    "rtx4090": "GeForce RTX 4090 (24 GB)",
    "rtx5090": "GeForce RTX 5090 (32 GB)",
    "rtx-pro-6000-maxq": "RTX PRO 6000 Blackwell Max-Q (96 GB)",
}
_TIMM_FILE = re.compile(
    r"benchmark-infer-(?P<prec>amp|amp_bf16|bf16|fp32)-(?P<layout>nchw|nhwc)-pt(?P<pt>\d+)"
    r"-(?P<cuda>cu\d+|cpu)-(?P<dev>.+?)(?P<dynamo>-dynamo)?\.csv$"
)
_TIMM_LEGACY = re.compile(r"model_benchmark_amp_(?P<layout>nchw|nhwc)_rtx3090\.csv$")


def _torch_version(digits: str) -> str:
    """timm's file names: pt110 = 1.10, pt113 = 1.13, pt210 = 2.1.0, pt291 = 2.9.1."""
    if digits.startswith("1"):
        return f"1.{digits[1:]}"
    return ".".join(digits)


def timm_tables(research: Path) -> list[Table]:
    folder = research / "timm"
    provenance = {}
    for line in (folder / "PROVENANCE.tsv").read_text().splitlines():
        name, path, commit, *_ = line.split("\t")
        provenance[name] = (path, commit)
    tables: dict[str, Table] = {}
    skipped_files = collections.Counter()
    # the 2021-22 files last: a setting they share with the pt110 file keeps the pt110 row
    for csv_path in sorted(
        folder.glob("*.csv"), key=lambda p: (p.name.startswith("model_"), p.name)
    ):
        m = _TIMM_FILE.match(csv_path.name)
        legacy = _TIMM_LEGACY.match(csv_path.name)
        if m and m["cuda"] != "cpu":
            gpu = _TIMM_GPUS[m["dev"]]
            precision = {"amp": "fp16", "amp_bf16": "bf16", "bf16": "bf16"}[m["prec"]]
            framework = f"pytorch-{_torch_version(m['pt'])}-{m['cuda']}"
            if m["prec"].startswith("amp"):
                framework += "-amp"
            layout, runtime = m["layout"], "compiled" if m["dynamo"] else "eager"
        elif legacy:
            # the 2021-22 file, identical to the first pt110 run at batch 256 (research SUMMARY)
            gpu, precision, layout, runtime = "rtx3090", "fp16", legacy["layout"], "eager"
            framework = "pytorch-1.10-cu113-amp"
        else:
            skipped_files["CPU" if m else "training"] += 1
            continue
        table = tables.setdefault(gpu, _timm_table(gpu))
        path, commit = provenance[csv_path.name]
        source = f"huggingface/pytorch-image-models:{path}"
        with csv_path.open(newline="") as f:
            for r in csv.DictReader(f):
                name = r["model"]
                if name not in FAMILIES:
                    table.drop("not a family_spec network", name)
                    continue
                resolution, batch = (
                    int(float(r["infer_img_size"])),
                    int(float(r["infer_batch_size"])),
                )
                row = Row(
                    name, resolution, batch, precision, layout, runtime,
                    float(r["infer_step_time"]), gpu, framework, source, commit,
                )  # fmt: skip
                table.add(row, r["param_count"], r.get("infer_gmacs", ""))
    return [tables[g] for g in sorted(tables)]


def _timm_table(gpu: str) -> Table:
    return Table(
        f"timm-{gpu}.csv",
        f"timm benchmark, {_TIMM_GPU_NAMES[gpu]}",
        "Origin: huggingface/pytorch-image-models `results/benchmark-infer-*.csv` (and the "
        "2021-22 `model_benchmark_amp_*_rtx3090.csv`), each file at the commit given in the "
        "`commit` column (research `timm/PROVENANCE.tsv`; files deleted from the repository "
        "later are taken at their last commit). Licence: Apache-2.0 (the repository's "
        "LICENSE).\n\n"
        "Measured with timm's `benchmark.py --bench inference`: random input, `model.eval()`, "
        "`torch.inference_mode()`, 10 warm-up and 40 timed steps (the script's defaults; the "
        "command lines used are not published), each step one forward pass "
        "of one batch followed by `torch.cuda.synchronize()`; `latency_ms` is timm's "
        "`infer_step_time` (ms per step). Batches are large (1024, 256 in the 2021-22 and "
        "pt240 4090-compiled files, 512 in pt240 4090 NHWC, 2048 on the PRO 6000), reduced by "
        "timm after an out-of-memory error, so big networks appear at smaller batches: "
        "throughput settings, not batch-1 latency. Precision: `fp16` rows are torch autocast "
        "(fp32 weights; framework ends in `-amp`), `bf16` rows are autocast bf16 (`-amp`) or "
        "the model and input cast to bf16 (no suffix). Layout `nhwc` is `--channels-last`. "
        "Runtime `compiled` is `--torchcompile` (inductor, default mode). The framework is the "
        "torch and CUDA version of the file name; driver, cuDNN and clocks are not published. "
        "Each row's `param_count` and `infer_gmacs` were checked against family_spec.",
    )


# ----- NVIDIA DeepLearningExamples ------------------------------------------------------------

_DLE_COMMIT = "729963dd47e7c8bd462ad10bfac7a7b0b604e6dd"
# README -> (network or {model column value: network}, resolution, framework per GPU/section)
_DLE_READMES = {
    "PyTorch/Classification/ConvNets/resnet50v1.5/README.md": ("resnet50", "pytorch-ngc21.03"),
    "PyTorch/Classification/ConvNets/resnext101-32x4d/README.md": (
        "resnext101_32x4d",
        "pytorch-ngc21.03",
    ),
    "PyTorch/Classification/ConvNets/efficientnet/README.md": (
        {"efficientnet-b0": ("efficientnet_b0", 224), "efficientnet-b4": ("efficientnet_b4", 380)},
        "pytorch-ngc21.03",
    ),
    "TensorFlow/Classification/ConvNets/resnet50v1.5/README.md": (
        "resnet50",
        "tensorflow-ngc20.06-tf1",
    ),
    "TensorFlow/Classification/ConvNets/resnext101-32x4d/README.md": (
        "resnext101_32x4d",
        "tensorflow-ngc20.06-tf1",
    ),
    "MxNet/Classification/RN50v1.5/README.md": ("resnet50", "mxnet"),
    "PaddlePaddle/Classification/RN50v1.5/README.md": ("resnet50", "paddlepaddle-ngc"),
    "TensorFlow2/Classification/ConvNets/efficientnet_v1/README.md": (
        {"v1-B0": ("efficientnet_b0", 224), "v1-B4": ("efficientnet_b4", 380)},
        "tensorflow-ngc21.09-tf2",
    ),
}
_DLE_GPUS = [  # heading text -> gpu
    (r"DGX A100 \(1x A100 40GB\)", "a100-sxm4-40gb"),
    (r"A100 \(1x A100 80GB?\)", "a100-sxm4-80gb"),
    (r"DGX-1 \(1x V100 16GB?\)|NVIDIA V100 \(1x V100 16GB\)", "v100-sxm2-16gb"),
    (r"DGX-1 \(1x V100 32GB?\)", "v100-sxm2-32gb"),
    (r"DGX-2 \(1x V100 32GB?\)", "v100-sxm3-32gb"),
    (r"A30 \(1x A30 24GB\)", "a30"),
    (r"A10 \(1x A10 24GB\)", "a10"),
    (r"\bT4\b", "t4"),
]
_MXNET_CONTAINER = {"a100-sxm4-80gb": "mxnet-ngc22.10", "v100-sxm2-16gb": "mxnet-ngc20.12",
                    "t4": "mxnet-ngc20.12"}  # fmt: skip


def _dle_gpu(heading: str) -> str | None:
    for pattern, gpu in _DLE_GPUS:
        if re.search(pattern, heading):
            return gpu
    return None


def dle_table(research: Path) -> Table:
    folder = research / "other" / "nvidia_DeepLearningExamples"
    table = Table(
        "dle.csv",
        "NVIDIA DeepLearningExamples, V100 / A100 / A30 / A10 / T4",
        "Origin: NVIDIA/DeepLearningExamples at commit "
        f"`{_DLE_COMMIT}`, the inference performance tables of the README named in the "
        "`source` column (with its line). Licence: PyTorch ConvNets BSD-3-Clause; TensorFlow, "
        "TensorFlow2 ConvNets and MXNet RN50 Apache-2.0 (their LICENSE files); PaddlePaddle "
        "RN50 states none.\n\n"
        "`latency_ms` is the tables' average latency of one batch (the READMEs' 'Latency Avg'; "
        "throughput x latency = batch). What the time includes differs by framework: the "
        "PyTorch tables come from `launch.py --mode benchmark_inference` (data loader "
        "running, 100 iterations: about 10 ms even at batch 1 on a V100, so small batches are "
        "host-bound); the TensorFlow 1 tables from `inference_benchmark.sh` (synthetic input, "
        "50 warm-up + 400 batches; 'XLA' tables are runtime `compiled`); MXNet 'Total IPS' "
        "includes data loading (only its mixed-precision latency column is published; the "
        "model is cast to float16); PaddlePaddle `--run-scope eval_only` (AMP with NHWC) and "
        "Paddle-TRT (`inference.py`, runtime `tensorrt`, no preprocessing); TensorFlow 2 "
        "EfficientNet through Keras (channels-last; 'FP16' = the mixed_float16 policy). "
        "Precision: 'Mixed Precision'/AMP rows are `fp16` with a framework ending in `-amp`; "
        "TF32 rows are A100/A30/A10 runs in fp32 with TF32 tensor cores (the TensorFlow2 "
        "README's 'TF32' tables for the V100 are labelled `fp32`: a V100 has no TF32). "
        "Layout: PyTorch AMP runs use channels-last (DLE's configs.yml), TensorFlow and "
        "MXNet fp16 compute in NHWC, others NCHW; TensorRT picks its own. Frameworks are "
        "the NGC containers the "
        "READMEs name (the PaddlePaddle results name none; its README requires 23.12). "
        "EfficientNet-B4 runs at 380 (DLE's default_image_size). GPUs: DGX-1 = V100 SXM2, "
        "DGX-2 = V100 SXM3 32 GB, DGX A100 = A100 SXM4. The READMEs publish no parameter "
        "counts; DLE's ResNet-50 v1.5, ResNeXt101-32x4d and EfficientNet-B0/B4 are the "
        "standard architectures that family_spec builds. Triton, GPUNet, SE-ResNeXt and "
        "EfficientNet-widese/v2 tables are not used (serving overhead or networks family_spec "
        "does not build).",
    )
    for rel, (network, framework) in _DLE_READMES.items():
        path = folder / rel
        source = f"NVIDIA/DeepLearningExamples:{rel}"
        for headings, label, header, body, line in markdown_tables(path):
            cols = [c.lower() for c in header]
            batch_col = next((i for i, c in enumerate(cols) if c.startswith("batch size")), None)
            lat_col = next((i for i, c in enumerate(cols) if c.startswith("avg latency")
                            or c.startswith("latency avg")), None)  # fmt: skip
            if batch_col is None or lat_col is None:
                continue
            heading = " > ".join(headings[k] for k in sorted(headings))
            if "training" in heading.lower():
                continue
            gpu = _dle_gpu(heading)
            if gpu is None:
                table.drop("a GPU the README does not name", rel, len(body))
                continue
            tensorrt = "Paddle-TRT" in heading
            text = (label + " " + header[lat_col]).lower()
            if "mixed precision" in text or "amp" in text.split():
                precision, amp = "fp16", not rel.startswith("MxNet")
            elif "fp16" in text:
                precision, amp = "fp16", rel.startswith("TensorFlow2")
            elif "int8" in text:
                precision, amp = "int8", False
            elif "tf32" in text:
                # a V100 or T4 has no TF32: the TF2 README's V100 'TF32' tables are fp32 runs
                tf32 = not gpu.startswith(("v100", "t4"))
                precision, amp = ("tf32" if tf32 else "fp32"), False
            elif "fp32" in text:
                precision, amp = "fp32", False
            else:
                table.drop("a table whose precision is not stated", rel, len(body))
                continue
            fw = _MXNET_CONTAINER[gpu] if framework == "mxnet" else framework
            if tensorrt:
                fw = "paddle-inference-trt-ngc"
            fw += "-amp" if amp else ""
            runtime = "tensorrt" if tensorrt else ("compiled" if "xla" in text else "eager")
            nhwc = (
                rel.startswith(("TensorFlow", "MxNet"))
                or (amp and rel.startswith(("PyTorch", "PaddlePaddle")))
            ) and not tensorrt
            model_col = cols.index("model") if "model" in cols else None
            for cells in body:
                if len(cells) <= max(batch_col, lat_col) or not cells[batch_col].strip():
                    continue
                if isinstance(network, dict):
                    key = cells[model_col] if model_col is not None else heading
                    match = [v for k, v in network.items() if k in key]
                    if not match:
                        table.drop("not a family_spec network", key.strip())
                        continue
                    name, resolution = match[0]
                else:
                    name, resolution = network, 224
                row = Row(
                    name, resolution, int(_number(cells[batch_col])), precision,
                    "nhwc" if nhwc else "nchw", runtime, _number(cells[lat_col]), gpu, fw,
                    f"{source}#L{line}", _DLE_COMMIT,
                )  # fmt: skip
                table.add(row)
    return table


# ----- pycls ----------------------------------------------------------------------------------

_PYCLS_COMMIT = "35429e83fad2de09f579d54f93f901efea65af47"
# pycls model -> family_spec network; RegNet names are their MF/GF sizes
_PYCLS_REGNET = {"200MF": "002", "400MF": "004", "600MF": "006", "800MF": "008",
                 "1.6GF": "016", "3.2GF": "032", "4.0GF": "040", "6.4GF": "064",
                 "8.0GF": "080", "12GF": "120", "16GF": "160", "32GF": "320"}  # fmt: skip
# per-GPU test batch (TEST.BATCH_SIZE / NUM_GPUS, 8 GPUs) and input size (TRAIN.IM_SIZE) of
# configs/dds_baselines/*.yaml @35429e83, the batch and size pycls timed the forward pass at
_PYCLS_BATCH_800 = {"200MF", "400MF", "600MF", "800MF", "1.6GF"}
_PYCLS_EFFNET = {"B0": (224, 25), "B1": (240, 25), "B2": (260, 25), "B3": (300, 25),
                 "B4": (380, 13), "B5": (456, 6)}  # fmt: skip


def _pycls_setting(model: str) -> tuple[str, int, int] | None:
    """family_spec name, resolution and per-GPU test batch of a pycls model."""
    family, _, size = model.partition("-")
    if family in ("RegNetX", "RegNetY"):
        if size in _PYCLS_BATCH_800:
            batch = 100
        elif size == "32GF" or (family == "RegNetY" and size == "16GF"):
            batch = 25
        else:
            batch = 50
        return f"{family.lower()}_{_PYCLS_REGNET[size]}", 224, batch
    if family == "ResNet":
        return f"resnet{size}", 224, 25
    if family == "ResNeXt" and size in ("50", "101"):
        return f"resnext{size}_32x4d", 224, 25
    if family == "EfficientNet":
        resolution, batch = _PYCLS_EFFNET[size]
        return f"efficientnet_{size.lower()}", resolution, batch
    return None


def pycls_table(research: Path) -> Table:
    folder = research / "other" / "pycls"
    table = Table(
        "pycls-v100.csv",
        "pycls model zoo, V100",
        "Origin: facebookresearch/pycls at commit "
        f"`{_PYCLS_COMMIT}`: `dev/model_timing.json` (`test_fw_time`, seconds per forward "
        "pass) for the models of `MODEL_ZOO.md`, whose parameter counts were checked; the batch "
        "and input size are those of `configs/dds_baselines/*.yaml` at the same commit. "
        "Licence: MIT.\n\n"
        "Measured on a Tesla V100 16 GB (SXM2, Big Basin servers), PyTorch 1.6, CUDA 10.0, "
        "cuDNN 7.6, fp32, eager, cudnn.benchmark on: pycls's `compute_time_eval` runs "
        "`model(inputs)` on zeros of the per-GPU test batch (TEST.BATCH_SIZE / 8 GPUs: 100 "
        "for RegNets up to 1.6GF, 50 or 25 above, 25 for ResNet/ResNeXt/EfficientNet-B0..B3, "
        "13 for B4, 6 for B5), 3 warm-up and 30 timed iterations, synchronizing after each; "
        "`model.eval()` but not under `torch.no_grad()`. MODEL_ZOO.md's 'infer (ms)' column "
        "is this time rescaled linearly to 64 images; this table keeps the time as measured "
        "(`latency_ms` = test_fw_time x 1000, at 0.1 ms resolution). EfficientNets run at "
        "their own input size (B0 224 ... B5 456), everything else at 224.",
    )
    timing = json.loads((folder / "model_timing.json").read_text())
    with (folder / "pycls_model_zoo_v100.csv").open(newline="") as f:
        zoo = {r["model"]: r for r in csv.DictReader(f)}
    for model, t in timing.items():
        if model not in zoo:
            continue  # metadata ("date-created"), not a model
        setting = _pycls_setting(model)
        if setting is None or setting[0] not in FAMILIES:
            table.drop("not a family_spec network", model)
            continue
        name, resolution, batch = setting
        latency = t["test_fw_time"] * 1000
        published = zoo[model]
        # MODEL_ZOO.md's rescaled figure must follow from this batch (a check of the table)
        assert abs(latency * 64 / batch - float(published["infer_ms_64img_1gpu"])) <= 1.0, model
        row = Row(
            name, resolution, batch, "fp32", "nchw", "eager", round(latency, 3),
            "v100-sxm2-16gb", "pytorch-1.6-cu100", "facebookresearch/pycls:dev/model_timing.json",
            _PYCLS_COMMIT,
        )  # fmt: skip
        table.add(row, published["params_M"])
    return table


# ----- PaddleClas -----------------------------------------------------------------------------

# PaddleClas model -> family_spec network, where PaddleClas builds the same architecture.
# Left out on purpose: MobileNetV2 below width 1 (Paddle rounds widths with int(), timm with
# make_divisible), MobileNetV3-small (Paddle's head is 1280 wide, timm's 1024: 2.94M vs 2.54M
# params), RegNetX_32GF (130.67M params vs 107.8M).
_PADDLE_NAMES = {
    **{f"ResNet{d}": f"resnet{d}" for d in (18, 34, 50, 101, 152)},
    **{f"ResNet{d}_vd": f"resnet{d}d" for d in (18, 34, 50, 101, 152)},
    "ResNet50_vc": "resnet50c",
    "ResNeXt50_32x4d": "resnext50_32x4d",
    "ResNeXt50_vd_32x4d": "resnext50d_32x4d",
    "ResNeXt101_32x4d": "resnext101_32x4d",
    "ResNeXt101_64x4d": "resnext101_64x4d",
    "ResNeXt101_32x8d_wsl": "resnext101_32x8d",
    **{f"EfficientNetB{i}": f"efficientnet_b{i}" for i in range(8)},
    "MobileNetV2": "mobilenetv2_100",
    "MobileNetV3_large_x1_0": "mobilenetv3_large_100",
    "PPLCNet_x0_35": "lcnet_035",
    "PPLCNet_x0_5": "lcnet_050",
    "PPLCNet_x0_75": "lcnet_075",
    "PPLCNet_x1_0": "lcnet_100",
    "PPLCNet_x1_5": "lcnet_150",
    "RegNetX_200MF": "regnetx_002",
    "RegNetX_4GF": "regnetx_040",
    **{f"VGG{d}": f"vgg{d}" for d in (11, 13, 16, 19)},
}
_PADDLE_HEAD = "d178931fca432204e6b7422bac4f92e09ff22fa4"


def _paddle_params(folder: Path) -> dict[str, str]:
    """Published parameter counts (M) by model: the model list, then the per-model docs."""
    params: dict[str, str] = {}
    for doc in sorted((folder / "per_model_docs_zh_CN").glob("*.md")):
        for _, _, header, body, _ in markdown_tables(doc):
            cols = [re.sub(r"<br\s*/?>", " ", c).lower() for c in header]
            p = next((i for i, c in enumerate(cols) if c.startswith("params")), None)
            if p is None:
                continue
            for cells in body:
                name = re.sub(r"<br\s*/?>", "", cells[0]).strip()
                if len(cells) > p and re.match(r"^[0-9.]+$", cells[p]):
                    params.setdefault(name, cells[p])
    with (folder / "paddleclas_v100_trt_fp32_latency.csv").open(newline="") as f:
        for r in csv.DictReader(f):
            params[r["model"]] = r["params_M"]
    return params


def paddleclas_tables(research: Path) -> list[Table]:
    folder = research / "other" / "paddleclas"
    commits = dict(
        line.split()
        for line in (folder / "per_model_docs_zh_CN" / "COMMITS.txt").read_text().splitlines()
    )
    params = _paddle_params(folder)
    about = (
        "Origin: PaddlePaddle/PaddleClas (snapshot `{head}`), the '基于 {gpu} GPU 的预测速度' "
        "(prediction speed on {gpu}) tables of `docs/zh_CN/models/ImageNet1k/<family>.md`, each "
        "doc at its last-change commit (`commit` column); parsed by the research step into "
        "`paddleclas_per_model_gpu_latency.csv`. Parameter counts (checked against "
        "family_spec; PaddleClas counts BatchNorm running statistics too, about +0.2%) from "
        "the docs' model tables and `model_list.md`. Licence: Apache-2.0.\n\n"
        "Measured with Paddle Inference + TensorRT 8.0.3.4 (runtime `tensorrt`), {what}, "
        "batches 1, 4 and 8; `latency_ms` is the published time of one batch (PaddleClas's "
        "benchmark runs 2,100 times and drops the first 100 as warm-up, per its model list). "
        "The input size is the tables' 'Size' column (224 where empty). Layout `nchw` is the "
        "input's; TensorRT chooses its own. The model list (`model_list.md`) has its own V100 "
        "numbers for some of these models, measured at another time; they are not used."
    )
    tables = {
        "V100": Table(
            "paddleclas-v100.csv",
            "PaddleClas, V100",
            about.format(head=_PADDLE_HEAD, gpu="V100", what="fp32 (V100 form factor not stated)"),
        ),
        "T4": Table(
            "paddleclas-t4.csv",
            "PaddleClas, T4",
            about.format(head=_PADDLE_HEAD, gpu="T4", what="fp16 and fp32 TensorRT engines"),
        ),
    }
    with (folder / "paddleclas_per_model_gpu_latency.csv").open(newline="") as f:
        for r in csv.DictReader(f):
            table = tables[r["gpu"]]
            name = _PADDLE_NAMES.get(r["model"])
            if name is None:
                table.drop("not a family_spec network (or a different architecture)", r["model"])
                continue
            if r["precision"] not in ("FP32", "FP16") or not re.match(
                r"^[0-9.]+$", r["latency_ms"]
            ):
                table.drop("precision or latency not stated", r["model"])
                continue
            doc = r["doc"]
            row = Row(
                name, int(r["input_size"] or 224), int(r["batch"]), r["precision"].lower(),
                "nchw", "tensorrt", float(r["latency_ms"]), r["gpu"].lower(),
                "paddle-inference-trt8.0.3.4" if "8.0.3.4" in r["note"] else "paddle-inference-trt",
                f"PaddlePaddle/PaddleClas:docs/zh_CN/models/ImageNet1k/{doc}", commits[doc],
            )  # fmt: skip
            if r["model"] not in params:
                table.drop("no published params to check the architecture", r["model"])
                continue
            table.add(row, params[r["model"]])
    return [tables["V100"], tables["T4"]]


# ----- MLPerf ---------------------------------------------------------------------------------

_MLPERF_GPUS = {"H100-SXM-80GB": "h100-sxm5-80gb", "H100-PCIe-80GB": "h100-pcie-80gb",
                "GH200-96GB (H100 GPU)": "gh200-96gb", "L4": "l4",
                "A100-SXM-80GB": "a100-sxm4-80gb", "A100-PCIe-80GB": "a100-pcie-80gb"}  # fmt: skip
_MLPERF_TRT = {"v3.1": "tensorrt-9.0.0-cuda12.2", "v3.0": "tensorrt-8.6.0-cuda12.0"}


def mlperf_table(research: Path) -> Table:
    path = research / "other" / "mlperf_inference_resnet50" / "mlperf_resnet50_nvidia_closed.csv"
    table = Table(
        "mlperf-resnet50.csv",
        "MLPerf Inference ResNet-50 (NVIDIA, closed division)",
        "Origin: mlcommons/inference_results_v3.1 (commit in the `commit` column; H100, "
        "GH200, L4) and inference_results_v3.0 (A100), `closed/NVIDIA/results/<system>/"
        "resnet50/<scenario>/performance/run_1/mlperf_log_summary.txt`, transcribed by the "
        "research step. Licence: not checked (MLCommons results repositories).\n\n"
        "ResNet-50 v1.5 at 224, int8 TensorRT engines in NVIDIA's LWIS harness (TensorRT 9.0.0 "
        "/ CUDA 12.2 in v3.1, 8.6.0 / 12.0 in v3.0), one GPU. SingleStream sends one image per "
        "query (batch 1) and MultiStream eight (batch 8, CUDA graphs); `latency_ms` is the "
        "mean query latency of the run (the scenario's metric is the 90th / 99th percentile, a "
        "few % higher). It includes the harness's host work per query. Offline and Server "
        "rows are left out: they report the throughput of a pipelined multi-stream harness "
        "whose per-engine batch is set in per-system configs the research step did not copy, "
        "so no per-batch time follows from them (H100, H100 PCIe and GH200 have only those).",
    )
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            if r["scenario"] not in ("SingleStream", "MultiStream"):
                table.drop(f"{r['scenario']} scenario (throughput, no per-batch time)")
                continue
            row = Row(
                "resnet50", 224, int(r["samples_per_query"]), "int8", "nchw", "tensorrt",
                round(int(r["mean_latency_ns"]) / 1e6, 4), _MLPERF_GPUS[r["gpu"]],
                _MLPERF_TRT[r["round"]], f"mlcommons/inference_results_{r['round']}:{r['path']}",
                r["repo_commit"],
            )  # fmt: skip
            table.add(row)
    return table


# ----- ryujaehun/pytorch-gpu-benchmark --------------------------------------------------------

_RYU_COMMIT = "3f47a9e2a43ca751ffade0add700b54b00e44bf0"
# torchvision models with timm's architectures and parameter counts, by their timm names
_TORCHVISION_SAME = (
    *("resnet18", "resnet34", "resnet50", "resnet101", "resnet152"),
    *("resnext50_32x4d", "resnext101_32x8d", "wide_resnet50_2", "wide_resnet101_2"),
    *("vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"),
)
_RYU_NAMES = {
    **{name: name for name in _TORCHVISION_SAME},
    "mnasnet0_5": "mnasnet_050",
    "mnasnet0_75": "mnasnet_075",
    "mnasnet1_0": "mnasnet_100",
    "mobilenet_v2": "mobilenetv2_100",
}


def ryujaehun_table(research: Path) -> Table:
    folder = research / "other" / "ryujaehun_pytorch-gpu-benchmark" / "results" / "dgx-a100"
    table = Table(
        "ryujaehun-a100.csv",
        "ryujaehun/pytorch-gpu-benchmark, A100 SXM4 40GB",
        f"Origin: ryujaehun/pytorch-gpu-benchmark at commit `{_RYU_COMMIT}`, "
        "`results/dgx-a100/A100-SXM4-40GB_1_gpus__{float,half}_model_inference_benchmark.csv` "
        "(one column per torchvision model, one row per timed iteration). Licence: none found "
        "in the repository snapshot.\n\n"
        "Measured by its `benchmark_models.py` on one A100-SXM4-40GB of a DGX A100, in the NGC "
        "pytorch:20.10 container (PyTorch 1.7.0a0, CUDA 11.1, cuDNN 8.0.4): torchvision models, "
        "batch 12 of random 224x224 images, `model.eval()`, `torch.no_grad()`, "
        "cudnn.benchmark on, eager, NCHW; 5 warm-up and 50 timed iterations, each timed "
        "from `torch.cuda.synchronize()` to `synchronize()` around `model(img.to('cuda'))`, so "
        "the host-to-device copy of the batch is included. `latency_ms` is the median of the "
        "50 iterations. 'float' is labelled `tf32`: PyTorch 1.7 on an A100 runs fp32 "
        "convolutions and matmuls on TF32 tensor cores by default; 'half' is the model and "
        "input cast to fp16 (`fp16`, no autocast). torchvision's ResNets (v1.5), ResNeXts, "
        "wide ResNets, VGGs (a 7x7x512 -> 4096 linear layer, the same counts as timm's conv "
        "head), MNASNet 0.5/0.75/1.0 and MobileNetV2 have timm's architectures and parameter "
        "counts. The other GPUs of the repository (GTX 1080 Ti, TITAN Xp, TITAN V, "
        "RTX 2080 Ti, TITAN RTX) are not used.",
    )
    for precision, label in (("tf32", "float"), ("fp16", "half")):
        name = f"A100-SXM4-40GB_1_gpus__{label}_model_inference_benchmark.csv"
        with (folder / name).open(newline="") as f:
            rows = list(csv.reader(f))
        header, values = rows[0], rows[1:]
        for i, model in enumerate(header):
            network = _RYU_NAMES.get(model)
            if network is None:
                table.drop("not a family_spec network", model)
                continue
            times = [float(v[i]) for v in values if v[i]]
            row = Row(
                network, 224, 12, precision, "nchw", "eager", round(statistics.median(times), 4),
                "a100-sxm4-40gb", "pytorch-1.7.0a0-ngc20.10",
                f"ryujaehun/pytorch-gpu-benchmark:results/dgx-a100/{name}", _RYU_COMMIT,
            )  # fmt: skip
            table.add(row)
    return table


# ----- output ---------------------------------------------------------------------------------


def write_csv(table: Table, out: Path) -> None:
    with (out / table.file).open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(COLUMNS)
        for row in table.rows:
            values = list(astuple(row))
            values[6] = f"{row.latency_ms:g}"
            w.writerow(values)


def _counts(rows: Iterable[Row]) -> list[str]:
    groups: dict[tuple, list[Row]] = collections.defaultdict(list)
    for r in rows:
        groups[(r.gpu, r.precision, r.layout, r.runtime, r.framework)].append(r)
    lines = [
        "| gpu | precision | layout | runtime | framework | rows | networks | batches |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (gpu, prec, layout, runtime, fw), rs in sorted(groups.items()):
        batches = sorted({r.batch for r in rs})
        shown = ", ".join(map(str, batches)) if len(batches) <= 6 else (
            f"{batches[0]}..{batches[-1]} ({len(batches)} sizes; "
            f"{max(collections.Counter(r.batch for r in rs).items(), key=lambda kv: kv[1])[0]} "
            "most often)"
        )  # fmt: skip
        lines.append(
            f"| {gpu} | {prec} | {layout} | {runtime} | {fw} | {len(rs)} | "
            f"{len({r.network for r in rs})} | {shown} |"
        )
    return lines


def write_source_md(tables: list[Table], out: Path) -> None:
    total = sum(len(t.rows) for t in tables)
    lines = [
        "# Public GPU inference measurements",
        "",
        "Written by `experiments/build_gpu_measurements.py` from the research copies of public",
        "benchmark results; do not edit by hand, rerun the script. Measured values are copied",
        "as published (they are facts); no code of the sources is copied. HELP, Accel-NASBench",
        "and nn-Meter are kept out on purpose: they are for external validation.",
        "",
        f"{len(tables)} tables, {total} rows. Columns of every CSV:",
        "",
        "| column | meaning |",
        "|---|---|",
        "| network | a `latency_models.families.family_spec` name (timm's model name) |",
        "| resolution | input height = width in pixels |",
        "| batch | images per forward pass |",
        "| precision | fp32, tf32 (fp32 on TF32 tensor cores), fp16, bf16 or int8 |",
        "| layout | nchw or nhwc (channels-last), as the run configured it |",
        "| runtime | eager (framework ops), compiled (torch.compile / XLA), tensorrt |",
        "| latency_ms | milliseconds for one forward pass of one batch |",
        "| gpu | the GPU, as a lowercase slug (form factor and memory where known) |",
        "| framework | framework, version and container; `-amp` = autocast / mixed precision |",
        "| source | repository:path of the published file (#Lline for README tables) |",
        "| commit | the commit of that file |",
        "",
        "One row per (gpu, network, resolution, batch, precision, layout, runtime, framework):",
        "when one setting is measured twice (in two timm files of the same torch version), the",
        "first kept file wins and the other counts as dropped.",
        "",
    ]
    for t in tables:
        lines += [f"## {t.file}: {t.title}", "", t.about, "", f"Rows: {len(t.rows)}.", ""]
        lines += _counts(t.rows)
        lines += ["", "Left out:", ""]
        if not t.dropped:
            lines.append("- nothing")
        for reason, n in sorted(t.dropped.items(), key=lambda kv: -kv[1]):
            names = sorted(t.dropped_names.get(reason, ()))
            shown = ""
            if names:
                more = f", ... ({len(names)} names)" if len(names) > 12 else ""
                shown = f": {', '.join(names[:12])}{more}"
            lines.append(f"- {n} rows, {reason}{shown}")
        lines.append("")
    lines += stacks_section()
    (out / "SOURCE.md").write_text("\n".join(lines))


def stacks_section() -> list[str]:
    """Which software stack (latency_models/profiles/stacks/) timed each table's rows, as the
    stack files' `sources` name them: experiments/fit_gpu_profiles.py charges host costs to
    these stacks."""
    from latency_models.stacks import shipped_stacks

    lines = [
        "## Software stacks",
        "",
        "The framework, runtime and host that timed each table's rows (the stack files in",
        "`latency_models/profiles/stacks/`, whose `sources` list these files; a row's stack is",
        "the first whose file, framework prefix and runtime match). The GPU fit charges the",
        "host's costs to the stack and the device's to the GPU. Rows that no stack names",
        "(timm's PyTorch 1.x tables; DeepLearningExamples' TensorFlow, MXNet and PaddlePaddle",
        "tables) are used by no fit.",
        "",
        "| file | framework (prefix) | runtime | stack | framework and host |",
        "|---|---|---|---|---|",
    ]
    for name, stack in sorted(shipped_stacks().items()):
        info = stack.info or {}
        about = f"{info.get('framework', '')}; {info.get('host', '')}".strip("; ")
        for source in info.get("sources") or []:
            lines.append(
                f"| {source['file']} | {source.get('framework', '(any)')} | "
                f"{source.get('runtime', '(any)')} | {name} | {about} |"
            )
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--research", type=Path, default=Path("/work/research/gpu"))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tables = [
        *timm_tables(args.research),
        dle_table(args.research),
        pycls_table(args.research),
        *paddleclas_tables(args.research),
        mlperf_table(args.research),
        ryujaehun_table(args.research),
    ]
    for table in tables:
        table.dedup()
        write_csv(table, args.out)
        print(json.dumps({"file": table.file, "rows": len(table.rows),
                          "dropped": dict(table.dropped)}))  # fmt: skip
    write_source_md(tables, args.out)


if __name__ == "__main__":
    main()
