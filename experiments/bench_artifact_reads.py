"""How often one search process reads and hashes its trained files.

Launches a small in-process search (predictor evaluation, SQLite) and counts every
`torch.load` and every SHA-256 computed while the config is validated and the search runs.
The goal is one read and one hash of each file (the supernet and the predictor) per
process. The script only uses `check_search_config` and `launch_search`, so it also runs
against older versions of the code, for the before/after figure:

    python experiments/bench_artifact_reads.py --checkpoint runs/mnist-supernet
    PYTHONPATH=/path/to/old/checkout python experiments/bench_artifact_reads.py ...
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="runs/mnist-supernet", type=Path)
    args = parser.parse_args()

    from nas.resources import check_search_config
    from nas.search import launch_search

    counts = {"torch_load": 0, "sha256": 0}
    torch_load, sha256 = torch.load, hashlib.sha256

    def counting_load(*a, **k):
        counts["torch_load"] += 1
        return torch_load(*a, **k)

    class CountingHash:
        """hashlib.sha256 that counts itself once it has hashed more than an arch's JSON:
        arch ids are short hashes of a few hundred bytes, files are hashed in large chunks."""

        def __init__(self, data: bytes = b"") -> None:
            self._hash, self._bytes, self._counted = sha256(), 0, False
            self.update(data)

        def update(self, data: bytes) -> None:
            self._hash.update(data)
            self._bytes += len(data)
            if self._bytes > 16_384 and not self._counted:
                counts["sha256"] += 1
                self._counted = True

        def hexdigest(self) -> str:
            return self._hash.hexdigest()

    def counting_sha256(data: bytes = b"", **_: object) -> CountingHash:
        return CountingHash(data)

    torch.load, hashlib.sha256 = counting_load, counting_sha256
    with tempfile.TemporaryDirectory(prefix="nas-reads-") as tmp:
        raw = {
            "name": "reads",
            "supernet": str(args.checkpoint / "supernet.pt"),
            "predictor": str(args.checkpoint / "predictor.pt"),
            "targets": {"stm32f746": {"flash_kb": 900}, "h100-sxm": {"batch": 64}},
            "algorithm": {"population": 8, "generations": 2},
            "evaluation": "predictor",
            "database": f"sqlite:///{tmp}/nas.db",
        }
        config = check_search_config(raw, "bench")
        launch_search(config, progress=False)
    for name, value in counts.items():
        print(
            json.dumps(
                {
                    "name": f"search_{name}_calls",
                    "value": value,
                    "unit": "calls per process",
                    "files": ["supernet.pt", "predictor.pt"],
                    "goal": "2 (one per file)",
                    "note": "sha256 counts hashes of more than 16 KiB: files, not arch ids",
                }
            )
        )


if __name__ == "__main__":
    main()
