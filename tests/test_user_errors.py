"""Every user error survives pickling: Ray and process pools hand a worker's exception to the
driver as a pickle, and one that cannot be rebuilt there (a subclass whose __init__ takes
its own arguments, not the message) turns into an unrelated TypeError."""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil

import pytest

from latency_models.errors import UserError

PACKAGES = ("latency_models", "supernet", "nas")


def import_all_modules() -> None:
    """Import every module of the project's packages, so each UserError subclass is defined."""
    for name in PACKAGES:
        package = importlib.import_module(name)
        for module in pkgutil.walk_packages(package.__path__, prefix=f"{name}."):
            if module.name.endswith(".__main__"):  # runs the CLI when imported
                continue
            importlib.import_module(module.name)


def subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *subclasses(sub)]
    return found


def an_instance(cls: type[UserError]) -> UserError:
    """An instance of `cls`: each argument its __init__ requires is given as a string naming
    it (a string is also an iterable, for the arguments that list choices)."""
    parameters = inspect.signature(cls.__init__).parameters.values()
    required = [
        p
        for p in list(parameters)[1:]
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if not required:
        return cls(f"a {cls.__name__} message")
    args = [f"<{p.name}>" for p in required if p.kind != p.KEYWORD_ONLY]
    kwargs = {p.name: f"<{p.name}>" for p in required if p.kind == p.KEYWORD_ONLY}
    return cls(*args, **kwargs)


import_all_modules()
USER_ERRORS = sorted(subclasses(UserError), key=lambda c: (c.__module__, c.__qualname__))


def test_the_walk_finds_the_errors_of_every_package():
    names = {cls.__name__ for cls in USER_ERRORS}
    # one with its own __init__ from each package, and one defined outside any errors module
    assert {"UnknownHardwareError", "UnknownSpaceError", "NotFoundError"} <= names
    assert "DistributedTrainingError" in names


@pytest.mark.parametrize("cls", [UserError, *USER_ERRORS], ids=lambda c: c.__name__)
def test_a_user_error_round_trips_through_pickle(cls):
    error = an_instance(cls)
    error.__cause__ = ValueError("the cause")  # not pickled, and no reason to fail
    restored = pickle.loads(pickle.dumps(error))
    assert type(restored) is cls
    assert str(restored) == str(error) and restored.args == error.args
    assert vars(restored) == vars(error)  # the fields a door reports (name, allowed, status)
