"""Fixtures of the pure-pattern tests (helpers live in pure_maps.py, importable by name)."""

from __future__ import annotations

import functools

import pytest
from pure_maps import simulated_map


@functools.cache
def _cached_map(**kwargs):
    return simulated_map(**kwargs)


@pytest.fixture(scope="session")
def sim_map():
    """``sim_map(dose=300, seed=1, ...)``: a simulated map, made once per test run."""
    return lambda **kwargs: _cached_map(**kwargs)
