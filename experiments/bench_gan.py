"""Anycost GAN figures for the trained default generator.

Prints one JSON object per figure:
  fid_real_floor              domain FID of real training digits against the validation
                              digits: the score of a perfect generator at this sample size
  fid  (per sub-generator)    domain FID of the full generator, uniform 0.75x/0.5x/0.25x
                              channels, and the full width at 16 and 8 px
  consistency                 MSE + perceptual distance of a sub-generator to the full
                              generator on the same latents (and each term)
  macs / macs_reduction       MACs of each sub-generator and full / sub as a ratio
  cpu_speedup                 measured: batch-1 CPU time of the extracted full generator over
                              that of the sub-generator, timed in the same run
  latency_ms (per device)     predicted by latency_models for each sub-generator
  sample_grid                 the PNG of samples, every row on the same latents

    python experiments/bench_gan.py [--checkpoint runs/mnist-gan]
        [--config experiments/mnist_gan.yaml] [--samples 1000]

Without a checkpoint it first trains the GAN with --config (resumable).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import latency_models as lm
from latency_models.torch.measure import Timing, time_module
from supernet.anycost.evaluate import GanEvaluator, load_gan, save_sample_grid
from supernet.anycost.metrics import frechet_distance, image_statistics, to_gan_range
from supernet.anycost.train import load_gan_config, train_gan

# device -> (batch, options)
DEVICES: dict[str, tuple[int, dict[str, str]]] = {
    "stm32h743": (1, {}),
    "stm32f746": (1, {}),
    "h100-sxm": (64, {"precision": "fp16"}),
    "a100-sxm": (64, {"precision": "fp16"}),
}


def emit(name: str, value: float, unit: str, **context: Any) -> None:
    print(json.dumps({"name": name, "value": value, "unit": unit, **context}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default="runs/mnist-gan")
    parser.add_argument("--config", default="experiments/mnist_gan.yaml")
    parser.add_argument("--samples", type=int, default=1000, help="images per domain FID")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for CPU timing")
    parser.add_argument("--grid", default=None, help="PNG path (default: checkpoint/bench.png)")
    args = parser.parse_args()

    run = Path(args.checkpoint)
    if not (run / "gan.pt").exists():
        train_gan(load_gan_config(args.config, out_dir=str(run)), resume=True)
    trained = load_gan(run)
    space, data = trained.space, trained.dataset()
    evaluator: GanEvaluator = trained.evaluator(data, samples=args.samples)
    samples = len(evaluator.real)

    train_real = to_gan_range(data.train.images[:samples], space.config.image_size)
    floor = frechet_distance(
        image_statistics(trained.feature_net, train_real),
        image_statistics(trained.feature_net, evaluator.real),
    )
    emit("fid_real_floor", round(floor, 4), "domain FID", samples=samples)

    rows = [(f"{r}x", space.uniform(r)) for r in sorted(space.config.ratios, reverse=True)]
    rows += [(f"1.0x@{res}px", space.uniform(1.0, res)) for res in (16, 8)]
    full = space.largest()
    full_macs = space.to_spec(full).macs
    full_module = trained.generator.extract(full).eval()
    timing = Timing("cpu", "fp32", threads=args.threads, warmup=10, repeats=40)
    latent_shape = (1, space.config.z_dim)
    reference = evaluator.reference()  # the full generator's images, made once
    for label, arch in rows:
        result = evaluator.evaluate(arch, reference)
        context = {"subnet": label, "arch": arch, "samples": samples}
        emit("fid", round(result.fid, 4), "domain FID", **context)
        emit("fid_over_real_floor", round(result.fid / floor, 3), "ratio", **context)
        if arch != full:
            emit("consistency", round(result.consistency, 5), "mse+perceptual", **context)
            emit("consistency_mse", round(result.consistency_mse, 5), "mse", **context)
            emit(
                "consistency_perceptual",
                round(result.consistency_perceptual, 5),
                "perceptual distance",
                **context,
            )
        spec = space.to_spec(arch)
        emit("macs", spec.macs, "MACs", subnet=label, params=spec.params)
        emit("macs_reduction", round(full_macs / spec.macs, 3), "x fewer MACs", subnet=label)
        for device, (batch, options) in DEVICES.items():
            costs = lm.load_hardware(device).predict(spec.with_batch(batch), **options)
            emit(
                "latency_ms",
                round(costs["latency_ms"], 4),
                "ms",
                subnet=label,
                device=device,
                batch=batch,
                **options,
            )
        if arch != full:
            # measured in the same run as the full generator's baseline, alternating
            sub_module = trained.generator.extract(arch).eval()
            full_ms = time_module(full_module, latent_shape, timing).median_ms
            sub_ms = time_module(sub_module, latent_shape, timing).median_ms
            full_ms = min(full_ms, time_module(full_module, latent_shape, timing).median_ms)
            emit(
                "cpu_speedup",
                round(full_ms / sub_ms, 3),
                "x (full / sub, batch 1)",
                subnet=label,
                full_ms=round(full_ms, 4),
                sub_ms=round(sub_ms, 4),
                threads=args.threads,
            )

    grid = Path(args.grid or run / "bench.png")
    save_sample_grid(trained.generator, space, grid, seed=1, columns=10)
    emit("sample_grid", 1, "file", path=str(grid))


if __name__ == "__main__":
    main()
