"""Where candidates are evaluated: in the driver's process, or by a pool of Ray actors.

Each Ray actor builds one CandidateEvaluator from an `EvaluatorSpec`, so it loads the
checkpoint, the predictor and the device models once, and refuses files whose SHA-256 is not
the one recorded at launch. A batch is split into chunks that go to whichever actor is free
(`RayPool.evaluate`); a chunk whose actor dies is given to a fresh actor (up to `max_retries`
times), so the search completes.
"""

from __future__ import annotations

import logging
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from nas.errors import WorkerError
from nas.evaluation import CandidateEvaluator, EvaluatorSpec, Metrics, SearchResources
from supernet.space import Arch

log = logging.getLogger(__name__)

# How a batch is dealt to Ray actors: chunks of about 1/CHUNKS_PER_ACTOR of an actor's
# share, each actor holding up to QUEUED_PER_ACTOR of them at once.
CHUNKS_PER_ACTOR = 4
QUEUED_PER_ACTOR = 2


class EvaluatorPool(ABC):
    @abstractmethod
    def evaluate(
        self, archs: Sequence[Arch], quality: str | None = "predictor"
    ) -> list[Metrics]: ...

    def close(self) -> None:  # noqa: B027 - pools without resources need nothing
        """Release workers."""

    def __enter__(self) -> EvaluatorPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalPool(EvaluatorPool):
    """Evaluates in this process, with what the search has already opened."""

    def __init__(self, evaluator: CandidateEvaluator) -> None:
        self.evaluator = evaluator

    def evaluate(self, archs: Sequence[Arch], quality: str | None = "predictor") -> list[Metrics]:
        return self.evaluator.evaluate(archs, quality)


class _Actor:
    """The Ray actor body (wrapped with ray.remote when the pool starts)."""

    def __init__(self, spec: EvaluatorSpec) -> None:
        self.evaluator = CandidateEvaluator.from_spec(spec)

    def evaluate(self, archs: list[Arch], quality: str | None) -> list[Metrics]:
        return self.evaluator.evaluate(archs, quality)

    def where(self) -> tuple[str, int]:
        """(Ray node id, process id): which machine and process this actor runs in."""
        import ray

        return ray.get_runtime_context().get_node_id(), os.getpid()


def start_ray(address: str | None, num_cpus: int | None = None) -> bool:
    """Connect to `address` (a cluster from `ray start --head`) or start a local Ray.

    Returns True when this call started Ray (and so should shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            # a short temp dir of its own: Ray's socket paths must stay under 107 bytes
            ray.init(num_cpus=num_cpus, _temp_dir=tempfile.mkdtemp(prefix="ray-"), **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as err:
        where = address or "a local instance"
        raise WorkerError(f"cannot start or join Ray at {where}: {err}") from None
    return True


class RayPool(EvaluatorPool):
    def __init__(
        self,
        spec: EvaluatorSpec,
        workers: int,
        address: str | None = None,
        max_retries: int = 3,
    ) -> None:
        import ray

        if workers < 1:
            raise ValueError("a Ray pool needs at least one worker")
        self.owns_ray = start_ray(address)
        self.spec, self.max_retries = spec, max_retries
        self._remote = ray.remote(num_cpus=1, max_restarts=0)(_Actor)
        self.actors = [self._new_actor() for _ in range(workers)]
        self.restarts = 0

    def _new_actor(self) -> Any:
        return self._remote.remote(self.spec)

    def evaluate(self, archs: Sequence[Arch], quality: str | None = "predictor") -> list[Metrics]:
        """Chunks of about a quarter of an actor's share go to whichever actor is free, two
        at a time per actor (one running, one queued behind it, so an actor never waits for
        the driver). Candidates differ in cost (a 32-pixel subnet takes four times a
        16-pixel one's), so one fixed chunk per actor leaves an actor idle while the other
        finishes."""
        import ray
        from ray.exceptions import RayActorError

        archs = list(archs)
        if not archs:
            return []
        n = len(self.actors)
        size = max(1, -(-len(archs) // (n * CHUNKS_PER_ACTOR)))
        chunks = [archs[i : i + size] for i in range(0, len(archs), size)]
        results: list[list[Metrics] | None] = [None] * len(chunks)
        attempts = [0] * len(chunks)
        waiting = list(range(len(chunks)))[::-1]  # popped from the end: in order
        pending: dict[Any, tuple[int, int, Any]] = {}  # ref -> (chunk, actor slot, actor)

        def submit(slot: int) -> None:
            if waiting:
                index = waiting.pop()
                actor = self.actors[slot]
                pending[actor.evaluate.remote(chunks[index], quality)] = (index, slot, actor)

        for _ in range(QUEUED_PER_ACTOR):
            for slot in range(n):
                submit(slot)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            ref = ready[0]
            index, slot, actor = pending.pop(ref)
            try:
                results[index] = ray.get(ref)
            except RayActorError as err:
                attempts[index] += 1
                if attempts[index] > self.max_retries:
                    raise WorkerError(
                        f"chunk {index} failed on {attempts[index]} actors: {err}"
                    ) from err
                log.warning(
                    "a Ray actor died (%s); retrying its %d candidates on a new actor",
                    type(err).__name__,
                    len(chunks[index]),
                )
                # the dead actor's other queued chunk fails too: replace the actor once
                if self.actors[slot] is actor:
                    self.actors[slot] = self._new_actor()
                    self.restarts += 1
                waiting.append(index)
            submit(slot)
        return [row for chunk in results for row in chunk or []]

    def locations(self) -> list[tuple[str, int]]:
        import ray

        return ray.get([actor.where.remote() for actor in self.actors])

    def close(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
        if self.owns_ray:
            ray.shutdown()


def make_pool(
    resources: SearchResources, workers: int, address: str | None = None
) -> EvaluatorPool:
    """workers == 0: evaluate in this process; N: N Ray actors (local, or at `address`)."""
    if workers == 0 and not address:
        return LocalPool(resources.evaluator())
    # one torch thread per actor: each actor is given one CPU
    return RayPool(resources.spec(threads=1), max(workers, 1), address)
