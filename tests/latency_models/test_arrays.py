"""The numeric view of a spec: counts, liveness, batching."""

from __future__ import annotations

import numpy as np

import supernet
from latency_models import SpecBatch
from latency_models.arrays import COL
from tests.latency_models.conftest import chain_net, residual_net


def test_counts_match_layerspec():
    space = supernet.get_space("ofa-mbv3-w1.0")
    spec = space.to_spec(space.sample(0))
    t = spec.arrays.columns
    assert t[COL["macs"]].tolist() == [ly.macs for ly in spec.layers]
    assert t[COL["weights"]].tolist() == [ly.weight_count for ly in spec.layers]
    assert t[COL["out_elems"]].tolist() == [ly.out_elements for ly in spec.layers]
    assert (spec.arrays.macs, spec.arrays.params) == (spec.macs, spec.params)


def test_liveness_by_hand():
    t = residual_net().arrays.columns
    # a reads the input (32); b reads a, which d reads later: an input, not held
    assert t[COL["inputs_elems"]].tolist() == [32, 64, 64, 128]
    assert t[COL["held_elems"]].tolist() == [0, 0, 64, 0]  # a waits for d while c runs
    assert t[COL["in_dies"]].tolist() == [1, 0, 1, 1]
    assert chain_net().arrays.columns[COL["in_dies"]].tolist() == [1, 1]


def test_arrays_are_cached_and_shared_across_batches():
    spec = residual_net()
    assert spec.arrays is spec.arrays
    assert spec.with_batch(4).arrays is spec.arrays
    assert spec.with_batch(4) == residual_net(batch=4)


def test_batch_reductions():
    specs = [residual_net(), chain_net(), residual_net(batch=3)]
    b = SpecBatch.of(specs)
    assert b.counts.tolist() == [4, 2, 4] and b.starts.tolist() == [0, 4, 6]
    assert b.batch.tolist() == [1, 1, 3]
    assert b.sum(b.col("macs")).tolist() == [s.macs for s in specs]
    assert b.max(b.col("out_elems")).tolist() == [64, 64, 64]
    assert np.array_equal(b.per_layer(np.array([1, 2, 3])), [1, 1, 1, 1, 2, 2, 3, 3, 3, 3])
    empty = SpecBatch.of([])
    assert len(empty) == 0 and empty.sum(empty.col("macs")).shape == (0,)


def test_block_signatures_and_strides():
    space = supernet.get_space("mnist-mbv3")
    arch = space.smallest()
    spec = space.to_spec(arch)
    blocks = spec.arrays.blocks
    assert len(blocks) == len(spec.blocks)
    assert blocks[0][0] == "conv" and blocks[1][0] == "mbconv"
    strides = spec.arrays.block_strides
    assert strides[0] == 1 and strides[1] == 2  # after the stride-2 stem
    pool = next(i for i, b in enumerate(spec.blocks) if b.kind == "global_avgpool")
    assert strides[pool + 1] == 0  # everything after the global pool is 1x1
