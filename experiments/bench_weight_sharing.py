"""Is the weight-shared supernet worth searching? Figures for the trained default supernet.

Prints one JSON object per figure:
  acc_largest / acc_smallest          top-1 of the largest and smallest subnets (val and test)
  inherited_vs_scratch                per arch: inherited accuracy (supernet weights, BN
                                      recalibrated) against the same arch trained from scratch
                                      for as many epochs as the supernet's whole schedule; the
                                      archs are spread across the MAC range (evenly spaced
                                      quantiles of 2,000 random archs' MACs)
  weight_sharing_gap_mean             mean of inherited - scratch, in points of top-1
  inherited_vs_scratch_kendall_tau    Kendall tau between inherited and scratch accuracies
  predictor_kendall_tau / _rmse       accuracy predictor on held-out archs

    python experiments/bench_weight_sharing.py [--checkpoint runs/mnist-supernet]
        [--config experiments/mnist_supernet.yaml] [--archs 20] [--predictor-n 1000]
        [--processes 2]

Without a checkpoint it first trains the supernet with --config (resumable). Slow: each arch
trains from scratch for the supernet's whole schedule (about a minute and a quarter per arch
for the default MNIST run on 2 cores); it is a benchmark, not part of the test suite. The
from-scratch runs go to --processes worker processes of one thread each, and each finished
arch is recorded beside the checkpoint (weight_sharing.SHA12.jsonl), so an interrupted run
resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import kendalltau

import supernet
from supernet.data import Dataset, random_shift, resize
from supernet.mbconv.checkpoint import TrainedSupernet, load_supernet
from supernet.mbconv.predictor import fit_predictor, measure_archs
from supernet.mbconv.train import TrainConfig, load_train_config, train_supernet
from supernet.run import cosine_schedule
from supernet.space import Arch


def emit(name: str, value: float, unit: str, **context) -> None:
    print(json.dumps({"name": name, "value": value, "unit": unit, **context}), flush=True)


def train_from_scratch(
    trained: TrainedSupernet, data: Dataset, arch: Arch, epochs: int, seed: int
) -> torch.nn.Module:
    """The arch as a static net with fresh random weights, trained alone at its resolution
    with the supernet run's optimizer settings and the learning rate of its first phase."""
    cfg = TrainConfig(**trained.meta["train_config"])
    torch.manual_seed(seed)
    net = supernet.build(trained.space).extract(arch).train()
    net = net.to(memory_format=torch.channels_last)
    lr = cfg.phases[0].lr
    optimizer = torch.optim.SGD(
        net.parameters(),
        lr=lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
        weight_decay=cfg.weight_decay,
    )
    steps = math.ceil(len(data.train) / cfg.batch_size)
    schedule = cosine_schedule(optimizer, steps, epochs * steps)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.split(torch.randperm(len(data.train), generator=gen), cfg.batch_size):
            x = random_shift(data.normalize(data.train.images[idx]), cfg.augment_shift, gen)
            x = resize(x, arch["r"]).contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(
                net(x), data.train.labels[idx], label_smoothing=cfg.label_smoothing
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return net.eval()


def scratch_accuracy(checkpoint: str, arch: Arch, epochs: int, seed: int) -> tuple[float, float]:
    """In a worker process of one thread: val top-1 of `arch` trained from scratch, and the
    seconds it took."""
    torch.set_num_threads(1)
    started = time.perf_counter()
    trained = load_supernet(checkpoint)
    data = trained.dataset()
    net = train_from_scratch(trained, data, arch, epochs, seed)
    return accuracy(net, data, "val", arch["r"]), time.perf_counter() - started


def spread_by_macs(space: supernet.SearchSpace, n: int, seed: int) -> list[Arch]:
    """`n` archs at evenly spaced quantiles of the MACs of 2,000 random archs (distinct)."""
    rng = np.random.default_rng(seed)
    pool = list({space.arch_id(a): a for a in (space.sample(rng) for _ in range(2000))}.values())
    macs = space.spec_batch(pool).macs
    order = np.argsort(macs, kind="stable")
    picks = np.unique(np.round(np.linspace(0, len(pool) - 1, n)).astype(int))
    return [pool[order[i]] for i in picks]


@torch.no_grad()
def accuracy(net: torch.nn.Module, data: Dataset, split: str, resolution: int) -> float:
    part = data.split(split)
    x = resize(data.normalize(part.images), resolution).contiguous(
        memory_format=torch.channels_last
    )
    return (net(x).argmax(1) == part.labels).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="runs/mnist-supernet")
    parser.add_argument("--config", default="experiments/mnist_supernet.yaml")
    parser.add_argument("--archs", type=int, default=20)
    parser.add_argument("--predictor-n", type=int, default=1000)
    parser.add_argument("--held-out", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()

    path = Path(args.checkpoint)
    if not (path / "supernet.pt" if path.is_dir() else path).exists():
        config = load_train_config(args.config, out_dir=str(path))
        train_supernet(config, resume=True, progress=False)
    trained = load_supernet(path)
    data = trained.dataset()
    space = trained.space
    epochs = int(trained.meta["total_epochs"])
    context = {
        "space": space.name,
        "dataset": data.name,
        "supernet_epochs": epochs,
        "checkpoint_sha256": trained.sha256[:12],
    }

    for split in ("val", "test"):
        evaluator = trained.evaluator(data, split=split)
        for which in ("largest", "smallest"):
            result = evaluator.evaluate(getattr(space, which)())
            emit(
                f"acc_{which}",
                round(result.top1, 4),
                "top1",
                split=split,
                images=result.images,
                **context,
            )

    # inherited (weight sharing) against trained from scratch, same archs, same split
    evaluator = trained.evaluator(data, split="val")
    archs = spread_by_macs(space, args.archs, args.seed)
    record = trained.path.parent / f"weight_sharing.{trained.sha256[:12]}.jsonl"
    done = {}
    if record.exists():
        for line in record.read_text().splitlines():
            row = json.loads(line)
            done[(row["arch_id"], row["seed"], row["scratch_epochs"])] = row
    keys = [(space.arch_id(a), args.seed + k, epochs) for k, a in enumerate(archs)]
    todo = [(k, a) for k, a in enumerate(archs) if keys[k] not in done]
    with ProcessPoolExecutor(args.processes, mp_context=mp.get_context("spawn")) as pool:
        futures = {
            pool.submit(scratch_accuracy, str(trained.path), a, epochs, args.seed + k): (k, a)
            for k, a in todo
        }
        for future in as_completed(futures):
            k, arch = futures[future]
            scratch_top1, seconds = future.result()
            row = {
                "arch_id": keys[k][0],
                "seed": keys[k][1],
                "scratch_epochs": epochs,
                "r": arch["r"],
                "macs": space.to_spec(arch).macs,
                "inherited": round(evaluator.evaluate(arch).top1, 4),
                "scratch": round(scratch_top1, 4),
                "seconds": round(seconds, 1),
            }
            with record.open("a") as f:
                f.write(json.dumps(row) + "\n")
            done[keys[k]] = row
    inherited, scratch = [], []
    for key in keys:
        row = done[key]
        inherited.append(row["inherited"])
        scratch.append(row["scratch"])
        emit(
            "inherited_vs_scratch",
            round(row["inherited"] - row["scratch"], 4),
            "top1 difference",
            **{k: v for k, v in row.items() if k != "seed"},
            **context,
        )
    gap = 100 * float(np.mean(np.array(inherited) - np.array(scratch)))
    emit(
        "weight_sharing_gap_mean",
        round(gap, 3),
        "points of top1 (inherited - scratch)",
        archs=args.archs,
        split="val",
        **context,
    )
    tau = kendalltau(inherited, scratch).statistic
    emit(
        "inherited_vs_scratch_kendall_tau",
        round(float(tau), 3),
        "kendall tau",
        archs=args.archs,
        **context,
    )

    measurements = measure_archs(trained, args.predictor_n, seed=args.seed, progress=False)
    predictor = fit_predictor(
        space, measurements, trained.sha256, held_out=args.held_out, seed=args.seed
    )
    m = predictor.metrics
    emit(
        "predictor_kendall_tau",
        round(m["kendall_tau"], 4),
        "kendall tau",
        goal=">= 0.85, or within 0.03 of the measurement ceiling (bench_predictor.py)",
        n_train=m["n_train"],
        n_held_out=m["n_held_out"],
        **context,
    )
    emit(
        "predictor_rmse",
        round(100 * m["rmse"], 3),
        "points of top1",
        n_train=m["n_train"],
        n_held_out=m["n_held_out"],
        **context,
    )


if __name__ == "__main__":
    main()
