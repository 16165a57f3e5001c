"""Record TFLite Micro's arena and the flatbuffer's size on exported subnets: the data the
`tflm` runtime of the MCU model (latency_models/models/mcu.py) is fitted to and checked on.

For `--count` random archs of the supernet's space (seeded; resolutions and widths may be
restricted to those the supernet was trained at), it writes the full-integer int8
flatbuffer with the export's own writer (converted in the converter's environment,
`make tflite-env`), runs it once in TFLM (`nas.export.tflm.run_in_tflm`: the recording
allocator, and the smallest arena it runs in) and prints one JSON object per subnet:
  space, arch            what was exported (the spec comes from space.to_spec(arch))
  file_bytes             the int8 .tflite file's size
  tflm_arena_bytes       head, tail, total as TFLM recorded them
  min_arena_bytes        the smallest arena the file runs in
  tflm_allocations       the tail's parts
  graph                  the file's op kinds, tensor count and lifetime head (for diagnosis)

    NAS_TFLITE_PYTHON=.venv-tflite/bin/python python experiments/record_tflm_arena.py \\
        --supernet runs/mnist-supernet-quick --count 10 --seed 1 --resolutions 12 16 20 24 \\
        > runs/tflm-mnist.jsonl
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from nas.export.formats import FILE_NAMES
from nas.export.tflm import run_in_tflm
from nas.export.writers import write_model_files
from supernet import open_artifact

_TENSOR_BYTES = {"INT8": 1, "INT16": 2, "INT32": 4, "FLOAT32": 4, "INT64": 8, "BOOL": 1}


def graph_summary(path: Path) -> dict[str, Any]:
    """Op kinds, tensors, the input's shape and the lifetime head of a flatbuffer: a tensor
    lives from the op writing it to the last op reading it (inputs from the start, outputs
    to the end); the head is the largest sum of live non-constant tensors' bytes."""
    from tflite_micro.python.tflite_micro.runtime import schema_fb as fb

    op_names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    type_names = {v: k for k, v in vars(fb.TensorType).items() if not k.startswith("_")}
    model = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(path.read_bytes(), 0))
    graph = model.subgraphs[0]

    def kind(op: Any) -> str:
        code = model.operatorCodes[op.opcodeIndex]
        return op_names[max(code.builtinCode, code.deprecatedBuiltinCode)]

    def nbytes(index: int) -> int:
        tensor = graph.tensors[index]
        return int(np.prod(tensor.shape)) * _TENSOR_BYTES[type_names[tensor.type]]

    const = {
        i
        for i, t in enumerate(graph.tensors)
        if model.buffers[t.buffer].data is not None and len(model.buffers[t.buffer].data)
    }
    first = {int(i): -1 for i in graph.inputs}
    last: dict[int, int] = {}
    for step, op in enumerate(graph.operators):
        for t in op.outputs:
            first.setdefault(int(t), step)
        for t in op.inputs:
            if t >= 0 and t not in const:
                last[int(t)] = step
    for t in graph.outputs:
        last[int(t)] = len(graph.operators)
    head = max(
        sum(nbytes(t) for t in first if first[t] <= step <= last.get(t, first[t]))
        for step in range(len(graph.operators))
    )
    return {
        "ops": dict(Counter(kind(op) for op in graph.operators)),
        "tensors": len(graph.tensors),
        "const_tensors": len(const),
        "lifetime_head_bytes": head,
        "input_shape": [int(v) for v in graph.tensors[graph.inputs[0]].shape],
    }


def record(trained: Any, arch: dict, calibration: int, folder: Path) -> dict[str, Any]:
    model = trained.exportable(arch, {})
    write_model_files(model, arch, ["tflite_int8"], folder, calibration, for_mcu=False)
    path = folder / FILE_NAMES["tflite_int8"]
    graph = graph_summary(path)
    # the arena does not depend on the values: a zero image of the file's own input type
    reply, _ = run_in_tflm(path, np.zeros(graph["input_shape"], np.int8))
    return {
        "file_bytes": path.stat().st_size,
        "tflm_arena_bytes": reply["arena_bytes"],
        "min_arena_bytes": reply["min_arena_bytes"],
        "tflm_allocations": reply["allocations"],
        "tflite_micro": reply["version"],
        "graph": graph,
    }


def sample_archs(
    space: Any, count: int, seed: int, resolutions: list[int] | None, widths: list[float] | None
) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    archs = []
    for _ in range(count):
        arch = dict(space.sample(rng))
        if resolutions:
            arch["r"] = int(rng.choice(resolutions))
        if widths and "w" in arch:
            arch["w"] = float(rng.choice(widths))
        archs.append(dict(space.canonical(arch)))
    return archs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--supernet", required=True, help="a trained supernet (file or run)")
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="the archs' sampling seed")
    parser.add_argument("--resolutions", type=int, nargs="*", help="r to sample from")
    parser.add_argument("--widths", type=float, nargs="*", help="w to sample from")
    parser.add_argument("--calibration-images", type=int, default=50)
    args = parser.parse_args()
    trained = open_artifact(args.supernet).trained()
    archs = sample_archs(trained.space, args.count, args.seed, args.resolutions, args.widths)
    for index, arch in enumerate(archs):
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="tflm-arena-") as tmp:
            row = record(trained, arch, args.calibration_images, Path(tmp))
        row = {
            "subnet": index,
            "seed": args.seed,
            "space": trained.space.name,
            "arch": arch,
            **row,
            "seconds": round(time.perf_counter() - started, 2),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
