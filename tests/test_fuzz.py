"""Fuzz every public function: exact results or errors that name the parameter.

For each function (specs in ``tests/fuzz/specs_<feature>.py``), Hypothesis draws a valid call on a
tiny layer and changes one argument: a different spelling of the same value,
an invalid value, an array in another dtype, byte order or layout, NaN/inf,
or an unaffordable size or budget. The function must return the exact result
(a direct-loop oracle), or raise TypeError/ValueError naming the parameter, or
convop.BudgetError with its estimate; and never allocate more than a few MiB.

The number of cases per function follows the Hypothesis profile: 300 in
``ci``, 60 in ``dev``, 2000 in ``thorough``. ``cd tests && python -m fuzz N``
prints the counts for N cases per function.
"""

from __future__ import annotations

import importlib.util
import os

import pytest
from fuzz.core import (
    Outcome,
    cases,
    run_case,
    specs,
)
from fuzz.mutations import (
    Bad,
    Same,
)
from hypothesis import HealthCheck, given, settings

import convop

EXAMPLES = {"ci": 300, "dev": 60, "thorough": 2000}
PROFILE = os.environ.get("CONVOP_HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev")
SPECS = {spec.name: spec for spec in specs()}


def test_every_public_function_is_fuzzed():
    public = {name for name in convop.__all__ if callable(getattr(convop, name))}
    # Reports and configs are data classes, exercised through the functions returning them;
    # the exceptions are what the fuzzer checks every refusal against.
    data = {"CheckReport", "ConfigResult", "DotTestReport", "LayerConfig", "SpectralReport",
            "ConvGeometry", "AuditReport", "LayerAudit", "BudgetError", "NoConvergence",
            "SpectralDensity", "SpectrumCertificate"}
    assert public - data - set(SPECS) == set()


@pytest.mark.parametrize("name", sorted(SPECS))
def test_fuzz(name):
    spec = SPECS[name]
    missing = [name for name in spec.needs if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")

    @settings(max_examples=EXAMPLES.get(PROFILE, 60), deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.filter_too_much])
    @given(case=cases(spec))
    def fuzz(case):
        outcome = run_case(spec, *case)
        assert not outcome.finding, outcome

    fuzz()


# The judge itself can fail ------------------------------------------------------------------


def test_a_wrong_result_is_a_finding():
    spec = SPECS["conv"]
    broken = type(spec)(**{**spec.__dict__, "function": lambda **kw: convop.conv(**kw) + 1,
                           "signature": convop.conv})
    base = _base(spec)
    assert run_case(broken, base, None, None).status == "wrong"


def test_an_unnamed_error_is_a_finding():
    spec = SPECS["conv"]
    base = _base(spec)

    def unhelpful(**kw):
        raise ValueError("something is off")

    broken = type(spec)(**{**spec.__dict__, "function": unhelpful, "signature": convop.conv})
    outcome = run_case(broken, base, "stride", Bad(0, "zero"))
    assert outcome.status == "unnamed" and outcome.finding


def test_a_bare_memory_error_and_a_big_allocation_are_findings():
    import numpy as np

    spec = SPECS["conv"]
    base = _base(spec)

    def bare(**kw):
        raise MemoryError("Unable to allocate 8.00 GiB")

    def greedy(**kw):
        return np.ones(2**24)  # 128 MiB, over the fuzz limit

    def unlabelled(**kw):  # an estimate, but not a BudgetError: a caller cannot tell it apart
        raise MemoryError("the matrix needs an estimated 8.0 GiB (8589934592 bytes)")

    for function, status in ((bare, "bare-memory"), (greedy, "allocation"),
                             (unlabelled, "bare-memory")):
        broken = type(spec)(**{**spec.__dict__, "function": function, "signature": convop.conv})
        assert run_case(broken, base, None, None).status == status


def test_accepting_a_bad_value_is_a_finding():
    spec = SPECS["conv"]
    base = _base(spec)
    lenient = type(spec)(**{**spec.__dict__, "function": lambda **kw: 0, "signature": convop.conv})
    outcome = run_case(lenient, base, "stride", Bad(0, "zero"))
    assert isinstance(outcome, Outcome) and outcome.status == "accepted-bad"
    same = run_case(spec, base, "stride", Same(list(base["stride"]), base["stride"], "list"))
    assert same.status == "result", same


def _base(spec):
    from hypothesis import strategies as st

    @given(st.data())
    @settings(max_examples=1, derandomize=True, database=None)
    def draw(data):
        draw.value = spec.base(data.draw)

    draw()
    return draw.value
