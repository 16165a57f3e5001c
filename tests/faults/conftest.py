"""Fixtures of the fault suite. PostgreSQL and the raw search configs come from
tests/conftest.py; here the searches get a name of their own."""

from __future__ import annotations

import pytest


@pytest.fixture
def raw_config(raw_config):
    """tests/conftest.py's raw configs, named as fault-suite searches."""
    return lambda **overrides: raw_config(**{"name": "fault-search", **overrides})
