"""Fine-tuning an extracted subnet, by default quantization-aware (QAT).

Static int8 quantization of a subnet's inherited weights (post-training, PTQ) can cost it
accuracy. Quantization-aware fine-tuning trains the subnet with BatchNorm folded and every
weight and activation fake-quantized to int8 (the scheme of the int8 export), distilling
from the supernet's largest subnet at the same input resolution, so that the weights learn
to live on the int8 grid. It runs only where PTQ loses more than a threshold.

    result = finetune_subnet(supernet, arch, FinetuneSettings(epochs=3))
    result.report["int8_top1"]   # {"ptq": ..., "after": ...} on the validation split

The fine-tuned weights are saved as a plain module state_dict (`save_finetuned`), in the
subnet's own structure (see supernet.quantization.trained_float_weights), and exported with
`nas export ... --weights FILE`.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import Progress
from torch import Tensor, nn

from supernet.data import resize
from supernet.errors import CheckpointError
from supernet.io import file_sha256, read_artifact, save_atomic
from supernet.mbconv.checkpoint import TrainedSupernet
from supernet.mbconv.evaluate import top1_of
from supernet.mbconv.train import soft_cross_entropy
from supernet.quantization import (
    DEFAULT_CALIBRATION_IMAGES,
    calibrate,
    fake_quantized,
    prepared_for_qat,
    trained_float_weights,
)
from supernet.space import Arch

FINETUNED_FORMAT = "nas-finetuned-subnet/1"
EVAL_BATCH = 500


@dataclass(frozen=True)
class FinetuneSettings:
    qat: bool = True  # False: fine-tune in float (same folded module, no fake quantizers)
    epochs: int = 3
    lr: float = 0.005
    batch_size: int = 64
    distill_weight: float = 1.0  # weight of the teacher's soft targets beside the labels
    temperature: float = 1.0
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES  # the first training images
    # QAT only where PTQ loses more than this (top-1 points); 0 always trains, even where
    # the measured drop is negative (int8 a little better than fp32 on val, which happens)
    threshold_points: float = 0.5
    seed: int = 0

    def check(self) -> None:
        for name, value, low in (
            ("epochs", self.epochs, 1),
            ("batch_size", self.batch_size, 1),
            ("calibration_images", self.calibration_images, 1),
        ):
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.threshold_points < 0:
            raise ValueError(f"threshold_points must be >= 0, got {self.threshold_points}")


@dataclass
class FinetuneResult:
    trained: bool  # False: PTQ already within the threshold, nothing was trained
    report: dict[str, Any]
    module: nn.Module | None  # the fine-tuned float subnet (BatchNorm folded), if trained


def finetune_subnet(
    supernet: TrainedSupernet,
    arch: Arch,
    settings: FinetuneSettings = FinetuneSettings(),
    progress: bool = True,
    shipped_drop_points: float | None = None,
) -> FinetuneResult:
    """Measure what static int8 quantization costs `arch` (torch fake quantization on the
    validation split), and fine-tune it where that exceeds `settings.threshold_points`
    (always, for a float fine-tune or a threshold of 0). `shipped_drop_points`, the drop
    the int8 file itself shows on val (measured by the caller in its runtime), decides
    instead where given."""
    settings.check()
    started = time.perf_counter()
    arch = supernet.space.canonical(arch)
    data = supernet.dataset()
    # the statistics the subnet is evaluated and exported with: in float32, as the export's
    evaluator = supernet.evaluator(data, precision="fp32")
    evaluator.recalibrate(arch)
    static = supernet.net.extract(arch).eval().to(memory_format=torch.contiguous_format)

    def split(name: str) -> tuple[Tensor, Tensor]:
        part = data.split(name)
        return resize(data.normalize(part.images), arch["r"]).contiguous(), part.labels

    train_x, train_y = split("train")
    val_x, val_y = split("val")
    calibration = train_x[: settings.calibration_images]
    fp32 = top1_of(static, val_x, val_y)
    ptq = top1_of(fake_quantized(static, calibration), val_x, val_y)
    report: dict[str, Any] = {
        "arch_id": supernet.space.arch_id(arch),
        "settings": asdict(settings),
        "split": "val",
        "fp32_top1": {"inherited": fp32},
        "int8_top1": {"ptq": ptq},
        "ptq_drop_points": round(100 * (fp32 - ptq), 3),
        # torch's FX quantization places fewer quantization points than onnxruntime's QDQ
        # file (e.g. around SE's multiply), so these run a little optimistic; the int8
        # export measures the file itself, which is the figure that ships
        "measured_in": "torch FX fake quantization (the export's scheme; the int8 file's "
        "onnxruntime figures, written by `nas export`, are the ones that ship)",
    }
    decisive = report["ptq_drop_points"]
    if shipped_drop_points is not None:
        report["shipped_ptq_drop_points"] = decisive = shipped_drop_points
    if settings.qat and settings.threshold_points > 0 and decisive <= settings.threshold_points:
        report["reason"] = (
            f"post-training int8 loses {decisive:.2f} points <= the "
            f"threshold {settings.threshold_points}: no fine-tuning needed"
        )
        report["seconds"] = round(time.perf_counter() - started, 2)
        return FinetuneResult(False, report, None)

    teacher_logits = _teacher_logits(supernet, evaluator, arch, train_x)
    student = prepared_for_qat(static, calibration)
    if settings.qat:
        calibrate(student, calibration, freeze=False)  # ranges keep tracking while training
    else:  # the same folded module, trained in float
        student.apply(torch.ao.quantization.disable_fake_quant)
        student.apply(torch.ao.quantization.disable_observer)
    losses = _train(student, train_x, train_y, teacher_logits, settings, progress)
    tuned = trained_float_weights(student, static)
    after_fp32 = top1_of(tuned, val_x, val_y)
    after_int8 = top1_of(fake_quantized(tuned, calibration), val_x, val_y)
    report["fp32_top1"]["after"] = after_fp32
    report["int8_top1"]["after"] = after_int8
    report["int8_drop_points_after"] = round(100 * (fp32 - after_int8), 3)
    report["teacher"] = "the supernet's largest subnet at the same resolution"
    report["train_loss"] = losses
    report["seconds"] = round(time.perf_counter() - started, 2)
    return FinetuneResult(True, report, tuned)


@torch.no_grad()
def _teacher_logits(
    supernet: TrainedSupernet, evaluator: Any, arch: Arch, images: Tensor
) -> Tensor:
    """The largest subnet's logits on `images`, at the student's resolution (fixed: the
    images are not augmented, so they are computed once)."""
    largest = dict(supernet.space.largest())
    largest["r"] = arch["r"]
    largest = supernet.space.canonical(largest)
    evaluator.recalibrate(largest)
    supernet.net.eval()
    logits = torch.cat([supernet.net(xb) for xb in images.split(EVAL_BATCH)])
    evaluator.recalibrate(arch)  # leave the supernet as the evaluation of `arch` leaves it
    supernet.net.eval()
    return logits


def _train(
    student: nn.Module,
    images: Tensor,
    labels: Tensor,
    teacher: Tensor,
    settings: FinetuneSettings,
    progress: bool,
) -> list[float]:
    """SGD with a cosine schedule on labels plus the teacher's soft targets; with QAT the
    activation ranges are frozen for the last epoch (of two or more). Returns the mean
    training loss per epoch."""
    generator = torch.Generator().manual_seed(settings.seed)
    steps_per_epoch = math.ceil(len(labels) / settings.batch_size)
    total = settings.epochs * steps_per_epoch
    optimizer = torch.optim.SGD(
        student.parameters(), lr=settings.lr, momentum=0.9, nesterov=True, weight_decay=4e-5
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total))
    )
    losses: list[float] = []
    student.train()
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("fine-tuning" + (" (QAT)" if settings.qat else ""), total=total)
        for epoch in range(settings.epochs):
            if settings.qat and settings.epochs > 1 and epoch == settings.epochs - 1:
                student.apply(torch.ao.quantization.disable_observer)
            order = torch.randperm(len(labels), generator=generator)
            running = []
            for index in order.split(settings.batch_size):
                out = student(images[index])
                loss = F.cross_entropy(out, labels[index])
                if settings.distill_weight > 0:
                    loss = loss + settings.distill_weight * soft_cross_entropy(
                        out, teacher[index], settings.temperature
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                running.append(loss.item())
                bar.advance(task)
            losses.append(round(float(np.mean(running)), 5))
    student.eval()
    return losses


def save_finetuned(
    path: Path, module: nn.Module, supernet: TrainedSupernet, arch: Arch, meta: dict[str, Any]
) -> str:
    """Write the fine-tuned subnet's weights (with the arch, its space and the supernet file
    they came from); returns the file's SHA-256."""
    save_atomic(
        {
            "format": FINETUNED_FORMAT,
            "space": supernet.space.name,
            "arch": dict(arch),
            "arch_id": supernet.space.arch_id(arch),
            "supernet_sha256": supernet.sha256,
            "state_dict": module.state_dict(),
            "meta": meta,
        },
        path,
    )
    return file_sha256(path)


def load_finetuned(path: str | Path, supernet_sha256: str, arch_id: str) -> dict[str, Any]:
    """A fine-tuned weights file, checked to be of this supernet file and this arch."""
    artifact = read_artifact(path, FINETUNED_FORMAT)
    data = artifact.data
    if data.get("supernet_sha256") != supernet_sha256:
        raise CheckpointError(
            f"{artifact.path} was fine-tuned from another supernet file (SHA-256 "
            f"{str(data.get('supernet_sha256'))[:12]}... != {supernet_sha256[:12]}...)"
        )
    if data.get("arch_id") != arch_id:
        raise CheckpointError(
            f"{artifact.path} holds arch {data.get('arch_id')}, not this candidate's {arch_id}"
        )
    return {**data, "sha256": artifact.sha256, "path": str(artifact.path)}
