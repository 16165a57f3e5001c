"""Data-parallel supernet training on Ray Train, measured on this machine.

Prints one JSON object:
  train_images_per_s_1_worker    one Ray Train worker with every core (threads = cores), at
                                 the global batch
  train_images_per_s_2_workers   two workers of cores/2 threads, each at half the batch
  train_scaling_2_vs_1           their ratio (same run, same global batch, same subnets)
  ddp_step_max_abs_diff_vs_single  one step of 2 workers at B against 1 worker at 2B: the
                                 largest difference of any weight
  resume_after_worker_kill       final val top-1 (largest, smallest) of a 2-worker run whose
                                 rank 1 exits mid-epoch, against the same run unbroken

Images/s count training steps only (each record's train_seconds: no evaluation, no Ray
start), over the epochs after the first (warm-up).

    python experiments/bench_train_scaling.py [--images 1200] [--batch 64] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
from pathlib import Path

import torch

from nas.training import train_distributed
from nas.workers import start_ray
from supernet.mbconv.train import TrainConfig, Trainer

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# an elastic phase: each step trains the largest, the smallest and two random subnets
ELASTIC = {"ks": [3, 5, 7], "e": [3, 4, 6], "d": [2, 3, 4]}


def config(out: Path, images: int, batch: int, epochs: int, threads: int) -> TrainConfig:
    return TrainConfig(
        space="mnist-mbv3",
        data={"kind": "mnist", "limit": images},
        out_dir=str(out),
        batch_size=batch,
        threads=threads,
        bn_recalibration_images=100,
        phases=[{"name": "elastic", "epochs": epochs, "lr": 0.05, **ELASTIC}],
    )


def images_per_s(history: list[dict], images: int) -> float:
    warm = history[1:] or history
    return images * len(warm) / sum(record["train_seconds"] for record in warm)


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoint.pt", weights_only=False)["model"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1200, help="Training images (MNIST).")
    parser.add_argument("--batch", type=int, default=64, help="The global batch.")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    cores = os.cpu_count() or 2
    root = Path(tempfile.mkdtemp(prefix="bench-train-"))
    started_ray = start_ray(None, num_cpus=cores)
    try:
        train_images = len(Trainer(config(root / "n", args.images, 1, 1, 1)).data.train)
        one = config(root / "one", args.images, args.batch, args.epochs, threads=cores)
        single = train_distributed(one, workers=1, progress=False)
        two = config(root / "two", args.images, args.batch // 2, args.epochs, cores // 2)
        double = train_distributed(two, workers=2, progress=False)
        one_rate = images_per_s(single.history, train_images)
        two_rate = images_per_s(double.history, train_images)

        # one step: the whole (small) split as one global batch
        step_images = 2 * args.batch
        half = math.ceil(len(Trainer(config(root / "m", step_images, 1, 1, 1)).data.train) / 2)
        step1 = config(root / "step1", step_images, 2 * half, 1, threads=1)
        step2 = config(root / "step2", step_images, half, 1, threads=1)
        train_distributed(step1, workers=1, progress=False)
        train_distributed(step2, workers=2, progress=False)
        a, b = weights(root / "step1"), weights(root / "step2")
        step_diff = max(
            float((a[k] - b[k]).abs().max())
            for k in a
            if a[k].is_floating_point() and "running" not in k
        )

        # a worker killed in the second epoch, against the same run unbroken
        kill_cfg = {"images": args.images, "batch": args.batch // 2, "epochs": 2, "threads": 1}
        unbroken = train_distributed(config(root / "unbroken", **kill_cfg), 2, progress=False)
        steps_per_epoch = math.ceil(train_images / args.batch)
        broken = train_distributed(
            config(root / "broken", **kill_cfg),
            2,
            progress=False,
            fail_once_at_step=steps_per_epoch + steps_per_epoch // 2,
        )
        same = max(
            float((x - y).abs().max())
            for x, y in zip(
                weights(root / "unbroken").values(), weights(root / "broken").values(), strict=True
            )
            if x.is_floating_point()
        )
    finally:
        if started_ray:
            import ray

            ray.shutdown()
    print(
        json.dumps(
            {
                "cores": cores,
                "train_images": train_images,
                "global_batch": args.batch,
                "subnets_per_step": 4,
                "train_images_per_s_1_worker": round(one_rate, 1),
                "train_images_per_s_2_workers": round(two_rate, 1),
                "train_scaling_2_vs_1": round(two_rate / one_rate, 3),
                "ddp_step_max_abs_diff_vs_single": step_diff,
                "resume_after_worker_kill": {
                    "killed_worker_restarted": (root / "broken" / ".failed-once").exists(),
                    "final_top1_broken": broken.final,
                    "final_top1_unbroken": unbroken.final,
                    "max_weight_diff": same,
                },
                "folder": str(root),
            }
        )
    )


if __name__ == "__main__":
    main()
