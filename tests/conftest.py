"""Shared pytest configuration: Hypothesis profiles, a seeded rng, opt-in markers.

Choose a Hypothesis profile with ``CONVOP_HYPOTHESIS_PROFILE`` (``ci``,
``dev`` or ``thorough``); CI (``CI`` set) uses the deterministic ``ci``
profile. Tests marked ``bigmem`` run only with ``--run-bigmem`` or
``CONVOP_RUN_BIGMEM=1``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=100,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=40, deadline=None)
settings.register_profile(
    "thorough", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(
    os.environ.get("CONVOP_HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev")
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-bigmem", action="store_true", default=False, help="run tests marked bigmem"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-bigmem") or os.environ.get("CONVOP_RUN_BIGMEM") == "1":
        return
    skip = pytest.mark.skip(reason="needs many GiB; run with --run-bigmem")
    for item in items:
        if "bigmem" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261122)
