"""(Re)compute the `uncertainty` block of the shipped profiles from rows they did not fit, with
each profile as it is on disk, and print one JSON object per profile and metric.

    python experiments/fit_uncertainty.py               # every profile below
    python experiments/fit_uncertainty.py v100-sxm2     # some of them
    python experiments/fit_uncertainty.py --check       # compute, print, write nothing

Only the `uncertainty` block is replaced; the rest of each YAML is kept as dump_profile writes
it. Re-run this after refitting a profile (experiments/fit_gpu_profiles.py writes its profiles
without the block). The residuals are log(measured / predicted) (latency_models.uncertainty):

* GPU profiles, per batch range (latency_models.models.gpu.BATCH_RANGES: a GPU's error at
  batch 1 is the host's and the harness's, not the GPU's): the profile's own held-out rows in
  that range (split `validation` of latency_models/profiles/gpu/fits/NAME.csv, never fitted),
  when there are at least MIN_OWN_ROWS of them. Otherwise it borrows, and `rows` says so: a
  fitted profile borrows the held-out rows of every GPU profile in that range, pooled (each
  row predicted by its own profile: the spread of errors across GPUs, wider than any one
  profile's); a transferred profile (another GPU's fit on this datasheet) borrows the check
  rows of the transferred profiles, whose errors include the transfer's, when there are
  MIN_OWN_ROWS of them, else the pool of every profile.
* stm32h743 (mcu): latency from leave-one-out residuals of its six TinyEngine rows (each
  network predicted by a fit on the other five, as `nas latency calibrate` fits them); the
  memory plan and flash are exact (MCUModel.exact_metrics). stm32f746, whose cycle counts
  are the H743's, borrows them.
* both MCU profiles under `runtime: tflm`: the arena a board must give (`peak_sram_kb@tflm`)
  and the flash (`flash_kb@tflm`) from the recorded TFLM runs the tflm constants were not
  fitted on (latency_models/profiles/mcu/tflm-heldout-*.jsonl, experiments/
  record_tflm_arena.py): the smallest arena each file ran in, and its flatbuffer's size.

`coverage_rows` gives, for experiments/bench_fidelity.py, the empirical coverage of these
intervals computed leaving each network out of the residuals that check it.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import latency_models as lm
from latency_models.hardware import read_yaml
from latency_models.models.gpu import BATCH_RANGES, batch_range, uncertainty_key
from latency_models.uncertainty import DEFAULT_COVERAGE, Residuals
from nas import profiling

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script or imported
from bench_fidelity import COLUMNS  # the same measurement CSV columns

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ROOT / "latency_models" / "profiles"
GPU = PROFILES / "gpu"
MCU = PROFILES / "mcu"
GPU_PROFILES = (
    "rtx4090",
    "v100-sxm2",
    "a100-sxm4-40gb",
    "a100-sxm",
    "l4",
    "h100-sxm",
    "h100-pcie",
    "h200",
)
MCU_PROFILES = ("stm32h743", "stm32f746")
MIN_OWN_ROWS = 5  # fewer held-out rows of its own in a batch range: a profile borrows


@dataclass(frozen=True)
class HeldOut:
    """Held-out rows of one GPU profile, each with the profile's prediction."""

    profile: str
    transferred: bool
    network: np.ndarray  # str per row
    batch_range: np.ndarray  # str per row
    predicted: np.ndarray
    measured: np.ndarray

    @property
    def log_ratios(self) -> np.ndarray:
        return np.log(self.measured / self.predicted)


def is_transferred(model: lm.CostModel) -> bool:
    calibration = model.profile.get("calibration") or {}
    return "transferred" in str(calibration.get("method", ""))


def gpu_held_out(name: str, work: Path) -> HeldOut | None:
    """The `validation` rows of gpu/fits/NAME.csv predicted by the profile on disk, or None
    when the profile has no rows."""
    fits = GPU / "fits" / f"{name}.csv"
    model = lm.load_hardware(name)
    if not fits.is_file():
        return None
    with open(fits, newline="") as f:
        used = [u for u in csv.DictReader(f) if u["split"] == "validation"]
    if not used:
        return None
    tables: dict[str, list[dict[str, str]]] = {}
    for file in {u["file"] for u in used}:
        with open(GPU / "public" / file, newline="") as f:
            tables[file] = list(csv.DictReader(f))
    # each row in the stack that timed it (as the fit saw it), not the profile's default
    rows = [{**tables[u["file"]][int(u["line"]) - 2], "stack": u["stack"]} for u in used]
    path = work / f"{name}-held-out.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    data = profiling.load_measurements([path])
    return HeldOut(
        name,
        is_transferred(model),
        np.array([r["network"] for r in rows]),
        np.array([batch_range(int(r["batch"])) for r in rows]),
        data.predict(model),
        data.metrics["latency_ms"],
    )


def gpu_residuals(
    name: str,
    transferred: bool,
    range_name: str,
    pool: Sequence[HeldOut],
    leave_out: str | None = None,
) -> Residuals | None:
    """The residuals of profile `name` in one batch range (see the module docstring), from the
    held-out rows of `pool`; `leave_out`: a network none of whose rows may be used."""

    def rows_of(sources: Sequence[HeldOut]) -> tuple[np.ndarray, list[str], int]:
        ratios, files, networks = [], [], set()
        for h in sources:
            keep = (h.batch_range == range_name) & (h.network != leave_out)
            if keep.any():
                ratios.append(h.log_ratios[keep])
                files.append(f"gpu/fits/{h.profile}.csv")
                networks |= set(h.network[keep].tolist())
        joined = np.concatenate(ratios) if ratios else np.zeros(0)
        return joined, files, len(networks)

    own = [h for h in pool if h.profile == name]
    ratios, _, networks = rows_of(own)
    if len(ratios) >= MIN_OWN_ROWS:
        text = f"{len(ratios)} held-out rows ({plural(networks, 'network')}) of "
        text += f"gpu/fits/{name}.csv at {range_name}"
        return Residuals.of(np.ones(len(ratios)), np.exp(ratios), text)
    mine = len(ratios)
    borrowed_from = "every GPU profile"
    ratios, files, networks = rows_of([h for h in pool if h.transferred] if transferred else [])
    if transferred and len(ratios) >= MIN_OWN_ROWS:
        borrowed_from = "the transferred profiles (their errors include the transfer's)"
    else:
        ratios, files, networks = rows_of(pool)
    if len(ratios) < 3:
        return None
    text = (
        f"borrowed: {len(ratios)} held-out rows ({plural(networks, 'network')}) at {range_name} of "
        f"{borrowed_from}, each predicted by its own profile ({', '.join(files)}); {name} has "
        f"{mine} of its own"
    )
    return Residuals.of(np.ones(len(ratios)), np.exp(ratios), text)


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def gpu_pool(work: Path) -> list[HeldOut]:
    return [h for name in GPU_PROFILES if (h := gpu_held_out(name, work)) is not None]


def gpu_uncertainty(name: str, pool: Sequence[HeldOut]) -> dict[str, Residuals]:
    transferred = is_transferred(lm.load_hardware(name))
    out = {}
    for range_name in BATCH_RANGES:
        residuals = gpu_residuals(name, transferred, range_name, pool)
        if residuals is not None:
            out[uncertainty_key("latency_ms", range_name)] = residuals
    return out


def gpu_coverage(
    pool: Sequence[HeldOut], coverage: float = DEFAULT_COVERAGE
) -> list[dict[str, Any]]:
    """Per GPU profile with held-out rows and batch range: the share of its held-out rows
    inside the interval made from residuals that leave the row's network out."""
    out = []
    for h in pool:
        for range_name in BATCH_RANGES:
            in_range = h.batch_range == range_name
            if not in_range.any():
                continue
            hits = []
            for network in sorted(set(h.network[in_range].tolist())):
                residuals = gpu_residuals(h.profile, h.transferred, range_name, pool, network)
                if residuals is None:
                    continue
                rows = in_range & (h.network == network)
                checked = residuals_hits(residuals, h.predicted[rows], h.measured[rows], coverage)
                hits.extend(checked)
            if hits:
                out.append(
                    {
                        "profile": h.profile,
                        "batches": range_name,
                        "rows": len(hits),
                        "networks": len(set(h.network[in_range].tolist())),
                        "coverage": round(float(np.mean(hits)), 4),
                    }
                )
    return out


def residuals_hits(
    residuals: Residuals, predicted: np.ndarray, measured: np.ndarray, coverage: float
) -> list[bool]:
    low, high = residuals.bounds(np.asarray(predicted, float), coverage)
    return ((measured >= low) & (measured <= high)).tolist()


# ----- MCU ----------------------------------------------------------------------------------


def mcu_rows() -> profiling.Measurements:
    return profiling.load_measurements([MCU / "tinyengine-stm32h743.csv"])


def mcu_loo(name: str = "stm32h743") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Each TinyEngine row's latency predicted by the profile refitted (as `nas latency
    calibrate` fits it, from its stored prior) on the other rows: (predicted, measured,
    networks)."""
    model = lm.load_hardware(name)
    data = mcu_rows()
    measured = data.metrics["latency_ms"]
    predicted = np.empty(len(measured))
    for i in range(len(measured)):
        others = [j for j in range(len(measured)) if j != i]
        fit = model.fit([data.specs[j] for j in others], {"latency_ms": measured[others]})
        refit = lm.from_profile(fit.profile, model.source)
        predicted[i] = refit.predict_arrays([data.specs[i]])["latency_ms"][0]
    networks = [r["network"] for r in data.rows]
    return predicted, measured, networks


def mcu_uncertainty(loo: tuple[np.ndarray, np.ndarray, list[str]]) -> dict[str, Residuals]:
    predicted, measured, _ = loo
    text = (
        f"leave-one-out: each of the {len(measured)} networks of "
        "mcu/tinyengine-stm32h743.csv predicted by a fit on the others"
    )
    return {"latency_ms": Residuals.of(predicted, measured, text)}


def mcu_coverage(loo: tuple[np.ndarray, np.ndarray, list[str]], coverage: float) -> dict:
    """Each network checked by the interval of the other networks' leave-one-out residuals."""
    predicted, measured, _ = loo
    hits = []
    for i in range(len(measured)):
        others = [j for j in range(len(measured)) if j != i]
        residuals = Residuals.of(predicted[others], measured[others], "others")
        hits.extend(residuals_hits(residuals, predicted[[i]], measured[[i]], coverage))
    return {"profile": "stm32h743", "rows": len(hits), "coverage": round(float(np.mean(hits)), 4)}


def tflm_rows(name: str) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], str]:
    """One MCU profile's predictions under `runtime: tflm` against the held-out TFLM records:
    metric -> (predicted, recorded) for the smallest working arena and the flash (the
    flatbuffer plus the core runtime's flash, as the profile counts them); and the rows'
    description."""
    import supernet  # the records name their space; only this part needs the package

    model = lm.load_hardware(name)
    files = sorted(MCU.glob("tflm-heldout-*.jsonl"))
    rows = [json.loads(line) for f in files for line in f.read_text().splitlines() if line]
    specs = [supernet.get_space(r["space"]).to_spec(r["arch"], batch=1) for r in rows]
    predicted = model.predict_arrays(specs, runtime="tflm")
    assert model.tflm is not None
    sram = np.array([r["min_arena_bytes"] / 1024 + model.runtime_sram_kb for r in rows])
    flash = np.array([r["file_bytes"] / 1024 + model.tflm.runtime_flash_kb for r in rows])
    text = f"{len(rows)} held-out TFLM runs of " + ", ".join(f"mcu/{f.name}" for f in files)
    pairs = {
        "peak_sram_kb": (predicted["peak_sram_kb"], sram),
        "flash_kb": (predicted["flash_kb"], flash),
    }
    return pairs, text


def tflm_uncertainty(name: str) -> dict[str, Residuals]:
    """`peak_sram_kb@tflm` (against the smallest arena each file ran in) and `flash_kb@tflm`
    (against its file size) of one MCU profile."""
    pairs, text = tflm_rows(name)
    what = {"peak_sram_kb": "the smallest arena each ran in", "flash_kb": "file size"}
    return {
        f"{metric}@tflm": Residuals.of(predicted, recorded, f"{text}: {what[metric]}")
        for metric, (predicted, recorded) in pairs.items()
    }


def tflm_coverage(name: str, coverage: float) -> list[dict[str, Any]]:
    """Each TFLM record checked by the interval of the other records' residuals."""
    pairs, _ = tflm_rows(name)
    out = []
    for metric, (predicted, recorded) in pairs.items():
        hits = []
        for i in range(len(recorded)):
            others = np.arange(len(recorded)) != i
            residuals = Residuals.of(predicted[others], recorded[others], "others")
            hits.extend(residuals_hits(residuals, predicted[[i]], recorded[[i]], coverage))
        coverage_of = round(float(np.mean(hits)), 4)
        out.append({"profile": name, "metric": f"{metric}@tflm", "rows": len(hits),
                    "coverage": coverage_of})  # fmt: skip
    return out


# ----- writing ------------------------------------------------------------------------------


def write_uncertainty(path: Path, uncertainty: dict[str, Residuals]) -> None:
    """Replace the `uncertainty` block of the profile at `path`, keeping the rest."""
    profile = dict(read_yaml(path))
    profile["uncertainty"] = {k: r.to_profile() for k, r in uncertainty.items()}
    lm.dump_profile(profile, path)
    lm.load_hardware(str(path))  # it must load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="profiles (default: all)")
    parser.add_argument("--check", action="store_true", help="print, write nothing")
    args = parser.parse_args()
    known = (*GPU_PROFILES, *MCU_PROFILES)
    wanted = set(args.names) or set(known)
    if wanted - set(known):
        sys.exit(f"unknown profiles {sorted(wanted - set(known))}; known: {list(known)}")
    blocks: dict[str, dict[str, Residuals]] = {}
    with tempfile.TemporaryDirectory(prefix="nas-uncertainty-") as tmp:
        pool = gpu_pool(Path(tmp))
    for name in GPU_PROFILES:
        if name in wanted:
            blocks[name] = gpu_uncertainty(name, pool)
    if wanted & set(MCU_PROFILES):
        residuals = mcu_uncertainty(mcu_loo())
        blocks["stm32h743"] = residuals
        borrowed = residuals["latency_ms"]
        blocks["stm32f746"] = {
            "latency_ms": Residuals(
                borrowed.log_ratios,
                f"borrowed from stm32h743 (its cycles per MAC are the H743's fit): {borrowed.rows}",
            )
        }
    for name in MCU_PROFILES:
        if name in wanted:
            blocks[name].update(tflm_uncertainty(name))
    for name in known:
        if name not in wanted:
            continue
        for metric, r in blocks[name].items():
            low, high = r.factors(DEFAULT_COVERAGE)
            print(
                json.dumps(
                    {
                        "profile": name,
                        "metric": metric,
                        "n": len(r.log_ratios),
                        "interval_90": [round(low, 4), round(high, 4)],
                        "rows": r.rows,
                    }
                ),
                flush=True,
            )
        if not args.check:
            write_uncertainty(lm.hardware_path(name), blocks[name])


if __name__ == "__main__":
    main()
