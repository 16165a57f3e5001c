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
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas.errors import WorkerError
from nas.evaluation import CandidateEvaluator, EvaluatorSpec, Metrics, evaluator_spec
from nas.resources import SearchResources
from supernet.family import PartialMeasurement
from supernet.space import Arch

log = logging.getLogger(__name__)

# How a batch is dealt to Ray actors: chunks of about 1/CHUNKS_PER_ACTOR of an actor's
# share, each actor holding up to QUEUED_PER_ACTOR of them at once.
CHUNKS_PER_ACTOR = 4
QUEUED_PER_ACTOR = 2


class EvaluatorPool(ABC):
    @abstractmethod
    def evaluate(
        self,
        archs: Sequence[Arch],
        quality: str | None = "predictor",
        partial: PartialMeasurement | None = None,
    ) -> list[Metrics]:
        """Each arch's metrics (CandidateEvaluator.evaluate), in order."""

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

    def evaluate(
        self,
        archs: Sequence[Arch],
        quality: str | None = "predictor",
        partial: PartialMeasurement | None = None,
    ) -> list[Metrics]:
        return self.evaluator.evaluate(archs, quality, partial)


class _Actor:
    """The Ray actor body (wrapped with ray.remote when the pool starts)."""

    def __init__(self, spec: EvaluatorSpec) -> None:
        self.evaluator = CandidateEvaluator.from_spec(spec)

    def evaluate(
        self, archs: list[Arch], quality: str | None, partial: PartialMeasurement | None
    ) -> list[Metrics]:
        return self.evaluator.evaluate(archs, quality, partial)

    def measure(self, archs: list[Arch]) -> list[Any]:
        """Each arch's figures on the validation split (a classifier's: top-1 and loss),
        measured with the supernet: what `nas predictor fit` records."""
        artifact = self.evaluator.artifact
        if artifact.family.predictors is None:
            raise WorkerError(f"a {artifact.family.description} has no predictor to measure for")
        evaluator = artifact.trained().quality_evaluator()  # the dataset: once per actor
        return [evaluator.evaluate(arch) for arch in archs]

    def where(self) -> tuple[str, int]:
        """(Ray node id, process id): which machine and process this actor runs in."""
        import ray

        return ray.get_runtime_context().get_node_id(), os.getpid()


@dataclass(frozen=True)
class StartedRay:
    """A local Ray this process started: `stop` shuts it down and removes its temp dir
    (a few MB of logs and sockets each run would otherwise leave in /tmp)."""

    temp_dir: str | None  # None: joined a cluster, whose files are the cluster's

    def stop(self) -> None:
        import ray

        ray.shutdown()
        if self.temp_dir:
            shutil.rmtree(self.temp_dir, ignore_errors=True)


def start_ray(address: str | None, num_cpus: int | None = None) -> StartedRay | None:
    """Connect to `address` (a cluster from `ray start --head`) or start a local Ray.

    Returns the Ray this call started or joined (to `stop` when done), or None when Ray was
    already running: then it is the caller's, and never stopped here."""
    import ray

    if ray.is_initialized():
        return None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    temp_dir = None
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            # a short temp dir of its own: Ray's socket paths must stay under 107 bytes
            temp_dir = tempfile.mkdtemp(prefix="ray-")
            ray.init(num_cpus=num_cpus, _temp_dir=temp_dir, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as err:
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)
        where = address or "a local instance"
        raise WorkerError(f"cannot start or join Ray at {where}: {err}") from None
    return StartedRay(temp_dir)


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
        self.started_ray = start_ray(address)
        self.spec, self.max_retries = spec, max_retries
        self._remote = ray.remote(num_cpus=1, max_restarts=0)(_Actor)
        self.actors = [self._new_actor() for _ in range(workers)]
        self.restarts = 0

    def _new_actor(self) -> Any:
        return self._remote.remote(self.spec)

    def evaluate(
        self,
        archs: Sequence[Arch],
        quality: str | None = "predictor",
        partial: PartialMeasurement | None = None,
    ) -> list[Metrics]:
        """Chunks of about a quarter of an actor's share go to whichever actor is free, two
        at a time per actor (one running, one queued behind it, so an actor never waits for
        the driver). Candidates differ in cost (a 32-pixel subnet takes four times a
        16-pixel one's), so one fixed chunk per actor leaves an actor idle while the other
        finishes."""
        archs = list(archs)
        size = max(1, -(-len(archs) // (len(self.actors) * CHUNKS_PER_ACTOR)))
        chunks = [archs[i : i + size] for i in range(0, len(archs), size)]
        results: list[list[Metrics]] = [[] for _ in chunks]
        for index, rows in self._deal(chunks, "evaluate", quality, partial):
            results[index] = rows
        return [row for chunk in results for row in chunk]

    def measure(self, archs: Sequence[Arch], chunk_size: int = 4) -> Iterator[Any]:
        """Each arch's figures measured with the supernet (its family's evaluator's result),
        yielded as its chunk comes back, in any order: the family's `measure` records each
        at once."""
        archs = list(archs)
        chunks = [archs[i : i + chunk_size] for i in range(0, len(archs), chunk_size)]
        for _, rows in self._deal(chunks, "measure"):
            yield from rows

    def _deal(self, chunks: list[list[Arch]], method: str, *args: Any) -> Iterator[tuple[int, Any]]:
        """(chunk index, its result) as each chunk comes back from the actor method named
        `method`, called with (chunk, *args). Chunks are dealt to whichever actor is free,
        QUEUED_PER_ACTOR at a time; a chunk whose actor died goes to a fresh actor, up to
        `max_retries` times."""
        import ray
        from ray.exceptions import RayActorError

        attempts = [0] * len(chunks)
        waiting = list(range(len(chunks)))[::-1]  # popped from the end: in order
        pending: dict[Any, tuple[int, int, Any]] = {}  # ref -> (chunk, actor slot, actor)

        def submit(slot: int) -> None:
            if waiting:
                index = waiting.pop()
                actor = self.actors[slot]
                ref = getattr(actor, method).remote(chunks[index], *args)
                pending[ref] = (index, slot, actor)

        for _ in range(QUEUED_PER_ACTOR):
            for slot in range(len(self.actors)):
                submit(slot)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            ref = ready[0]
            index, slot, actor = pending.pop(ref)
            try:
                result = ray.get(ref)
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
                continue
            submit(slot)  # before yielding: the actor is kept busy while the caller works
            yield index, result

    def locations(self) -> list[tuple[str, int]]:
        import ray

        return ray.get([actor.where.remote() for actor in self.actors])

    def close(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
        if self.started_ray:
            self.started_ray.stop()


def measurement_pool(
    supernet: str | os.PathLike, sha256: str, workers: int, address: str | None = None
) -> RayPool:
    """Ray actors that measure archs with a trained supernet (`RayPool.measure`), one torch
    thread each: on a small CPU, processes scale where a second intra-op thread barely
    helps (`nas predictor fit --workers N`)."""
    spec = EvaluatorSpec(str(Path(supernet).resolve()), sha256, None, None, (), threads=1)
    return RayPool(spec, max(workers, 1), address)


def make_pool(
    resources: SearchResources, workers: int, address: str | None = None
) -> EvaluatorPool:
    """workers == 0: evaluate in this process; N: N Ray actors (local, or at `address`)."""
    if workers == 0 and not address:
        return LocalPool(CandidateEvaluator.of(resources))
    # one torch thread per actor: each actor is given one CPU
    return RayPool(evaluator_spec(resources, threads=1), max(workers, 1), address)
