"""`nas finetune`: fine-tune a searched candidate, by default quantization-aware.

The candidate's subnet is taken with its inherited weights from the trained file its search
ran with (checked by SHA-256). Post-training int8 quantization is measured first; only if it
loses more than the threshold is the subnet trained with fake quantization, distilling from
the supernet's largest subnet (the family's `finetuning`). The weights go to a file that
`nas export SEARCH CANDIDATE --weights FILE` exports instead of the inherited ones.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas.errors import ExportError, os_reason
from nas.export import FILE_NAMES, load_candidate, write_int8, write_onnx
from nas.store import Store
from supernet.errors import ConfigError
from supernet.family import TrainedModel
from supernet.space import Arch

log = logging.getLogger(__name__)
WEIGHTS_NAME = "finetuned.pt"
REPORT_NAME = "finetune.json"


@dataclass
class FinetuneOutcome:
    trained: bool
    report: dict[str, Any]
    weights: Path | None  # the fine-tuned weights file, if anything was trained


def _shipped_ptq_drop(trained: TrainedModel, arch: Arch, settings: Any) -> float:
    """The top-1 points (val) the int8 export's file loses against the fp32 file, measured
    in onnxruntime: what decides whether QAT is needed (torch's fake quantization places
    fewer quantization points, so it runs a little optimistic)."""
    model = trained.exportable(arch, {})
    try:
        with tempfile.TemporaryDirectory(prefix="nas-finetune-") as tmp:
            fp32 = Path(tmp) / FILE_NAMES["onnx"]
            write_onnx(model, fp32)
            measured = write_int8(
                model, fp32, Path(tmp) / FILE_NAMES["onnx_int8"], settings.calibration_images
            )
    except OSError as err:  # a full or read-only temp disk: one line, as an export says it
        where = err.filename or tempfile.gettempdir()
        raise ExportError(
            f"cannot measure the int8 drop: {os_reason(err)} writing {where} (the temporary "
            "ONNX files; TMPDIR names another folder)"
        ) from None
    return float(measured["top1_drop_points"]["val"])


def finetune_candidate(
    store: Store,
    search_id: int,
    candidate: int,
    options: dict[str, Any],
    out_dir: str | Path | None = None,
    progress: bool = False,
) -> FinetuneOutcome:
    """Fine-tune candidate `candidate` of search `search_id` (see the module's docstring)
    with the family's settings made from `options`; the weights and a JSON report go to
    `out_dir` (runs/finetune/searchS-candidateN)."""
    found = load_candidate(store, search_id, candidate, "fine-tune")
    family = found.opened.family
    try:
        tuning = family.require_finetuning()
        settings = tuning.settings(**options)
        settings.check()
    except (ConfigError, TypeError, ValueError) as err:
        raise ExportError(f"cannot fine-tune search {search_id}'s candidates: {err}") from None
    trained = found.opened.trained()
    kind = "qat" if settings.qat else "float"
    out = Path(out_dir or f"runs/finetune/search{search_id}-candidate{candidate}-{kind}")
    shipped = _shipped_ptq_drop(trained, found.arch, settings) if settings.qat else None
    result = tuning.finetune(trained, found.arch, settings, progress, shipped)
    report = {"search_id": search_id, "candidate": candidate, "kind": kind, **result.report}
    weights = None
    if result.module is not None:
        weights = out / WEIGHTS_NAME
        report["weights_sha256"] = tuning.save(weights, result.module, trained, found.arch, report)
        report["weights"] = str(weights)
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT_NAME).write_text(json.dumps(report, indent=2))
    log.info("fine-tuning search %d candidate %d: %s", search_id, candidate, out)
    return FinetuneOutcome(result.trained, report, weights)
