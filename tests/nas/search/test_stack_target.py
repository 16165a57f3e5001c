"""`stack:` in a search's target for a GPU: the software stack reaches every prediction."""

from __future__ import annotations

import numpy as np
import pytest

import latency_models as lm
from nas.errors import SearchConfigError
from nas.evaluation import CandidateEvaluator
from nas.resources import check_search_config

OLD_STACK = "pytorch-1-7-ngc20-10"  # PyTorch 1.7 eager on a DGX A100: a slow host


def test_a_gpu_target_predicts_in_its_stack_and_refuses_unknown_stacks(raw_config):
    raw = raw_config()
    raw["targets"] = {"a100-sxm": {"latency_ms": 50.0, "batch": 8, "stack": OLD_STACK}}
    checked = check_search_config(raw, "t")
    target, hw = checked.resources.devices[0]
    assert target.options == {"stack": OLD_STACK} and target.batch == 8
    evaluator = CandidateEvaluator.of(checked.resources)
    space = checked.resources.artifact.space
    archs = [space.sample(np.random.default_rng(seed)) for seed in range(4)]
    costs = [row["a100-sxm.latency_ms"] for row in evaluator.costs(archs)]
    specs = [space.to_spec(a, batch=8) for a in archs]
    assert costs == pytest.approx([hw.predict(s, stack=OLD_STACK)["latency_ms"] for s in specs])
    default = [hw.predict(s)["latency_ms"] for s in specs]  # the current PyTorch: faster
    assert all(c > 2 * d for c, d in zip(costs, default, strict=True))
    raw["targets"]["a100-sxm"]["stack"] = "pytorch-0"
    with pytest.raises(SearchConfigError, match=r"targets\.a100-sxm: .*unknown stack 'pytorch-0'"):
        check_search_config(raw, "t")
    raw["targets"]["a100-sxm"].update(stack="tensorrt", runtime="eager")
    with pytest.raises(SearchConfigError, match="stack tensorrt runs tensorrt, not eager"):
        check_search_config(raw, "t")
    assert lm.load_hardware("a100-sxm").options()["stack"][0] == "pytorch-2-eager"
