"""The NAS service: configs, evaluators, search, storage, export and the `nas` CLI."""

__version__ = "0.1.0"
