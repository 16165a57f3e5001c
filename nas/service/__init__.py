"""The NAS service: an HTTP API (nas.service.app) and its job runner (nas.service.jobs)."""
