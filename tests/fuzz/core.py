"""The fuzzer's engine: mutations, the Spec of a public function, shared oracles, the judge.

Every public function gets a *spec* (in ``specs_<feature>.py``, registered with
:func:`register`): a valid base call drawn from a tiny layer, the kind of each
parameter, and an oracle computed with direct loops (never with convop's own
code). A fuzz case takes the base call and changes one argument:

- ``Same``: the same value spelled differently (numpy scalars, 0-d arrays,
  lists, arrays; dtypes, byte orders and layouts of arrays). The function must
  return the oracle's result for the value as the function sees it;
- ``Bad``: an invalid value. The function must raise ``TypeError``,
  ``ValueError`` or ``MemoryError`` whose message names the parameter (a
  ``MemoryError`` must be a ``convop.BudgetError`` stating the bytes it needs);
- ``Unaffordable``: a size or budget that cannot be met. The function must raise
  ``convop.BudgetError`` with its estimate, or ``ValueError`` naming the parameter.

:func:`run_case` applies those rules and returns what happened; ``tests/test_fuzz.py``
asserts on it and ``cd tests && python -m fuzz N`` prints counts over N cases per
function.
"""

from __future__ import annotations

import inspect
import itertools
import math
import re
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from hypothesis import strategies as st
from oracles import loop_matrix, source_pixel
from strategies import Layer

import convop

from .mutations import (
    MODES,
    PEAK_LIMIT,
    Bad,
    Mutation,
    Same,
    Unaffordable,
    choice_mutations,
    int_mutations,
    padding_mutations,
    tuple_mutations,
)

# Specs ---------------------------------------------------------------------------------------


@dataclass
class Spec:
    """One public function: its base call, parameter mutations and oracle."""

    name: str
    function: Callable[..., Any]
    base: Callable[[Any], dict[str, Any]]  # draw -> {param: value}, valid and normalized
    mutations: Callable[[dict[str, Any]], dict[str, list[Mutation]]]
    check: Callable[[dict[str, Any], Any], None]  # (values as seen, result) -> assert
    problem: Callable[[dict[str, Any]], str | None] = lambda values: None
    needs: tuple[str, ...] = field(default_factory=tuple)  # requirements (optional packages)
    signature: Callable[..., Any] | None = None  # whose parameters the call takes

    def accepted(self) -> set[str]:
        """The parameter names the public function takes."""
        target = self.signature or self.function
        return set(inspect.signature(target).parameters)


def drawn_layer(draw: Any, ndims: tuple[int, ...] = (1, 2), modes: bool = True
                ) -> dict[str, Any]:
    ndim = draw(st.sampled_from(ndims))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(ndim))
    stride = tuple(draw(st.integers(1, 2)) for _ in range(ndim))
    pads = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(ndim))
    size = tuple(max(1, d * (k - 1) + 1 - lo - hi) + draw(st.integers(1, 3))
                 for k, d, (lo, hi) in zip(kernel, dilation, pads))
    groups = draw(st.integers(1, 2))
    c_in_g, c_out_g = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    mode = "zeros"
    if modes:
        allowed = [m for m in MODES if m in ("zeros", "replicate")
                   or (m == "reflect" and all(max(p) < n for p, n in zip(pads, size)))
                   or (m == "circular" and all(max(p) <= n for p, n in zip(pads, size)))]
        mode = draw(st.sampled_from(allowed))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    weight_shape = (groups * c_out_g, c_in_g, *kernel)
    return dict(weight=rng.integers(-3, 4, size=weight_shape).astype(np.float64),
                input_size=size, stride=stride, padding=pads, dilation=dilation, groups=groups,
                padding_mode=mode, _rng=rng, _batch=draw(st.integers(1, 2)))


def out_size(v: dict[str, Any]) -> tuple[int, ...]:
    return tuple((n + lo + hi - d * (k - 1) - 1) // s + 1 for n, k, s, d, (lo, hi) in zip(
        v["input_size"], np.shape(v["weight"])[2:], v["stride"], v["dilation"], v["padding"]))


def layer_of(v: dict[str, Any], weight_shape: tuple[int, ...] | None = None) -> Layer:
    shape = tuple(np.shape(v["weight"])) if weight_shape is None else weight_shape
    return Layer(weight_shape=shape, input_size=tuple(v["input_size"]), stride=tuple(v["stride"]),
                 padding=tuple(v["padding"]), dilation=tuple(v["dilation"]),
                 groups=int(v["groups"]), pads=tuple(v["padding"]))


def dense_of(v: dict[str, Any], domain: str = "input", order: str = "C",
             weight: Any = None) -> np.ndarray:
    w = np.asarray(v["weight"] if weight is None else weight)
    exact = w.astype(np.complex128 if w.dtype.kind == "c" else np.float64)
    return loop_matrix(exact, layer_of(v, w.shape), domain, order, v.get("padding_mode", "zeros"))[0]


def padded_operator(v: dict[str, Any], weight: Any = None) -> sp.csr_array:
    """The seed's W (padded domain) with every tap stored, zero weights included.

    Products run over stored entries only, as the layer's do: a NaN weight whose tap
    lands on zero padding gives NaN * 0 = NaN (PyTorch too), and a NaN gradient reaches
    only the pixels its taps read.
    """
    w = np.asarray(v["weight"] if weight is None else weight)
    exact = w.astype(exact_dtype(w))
    layer = layer_of(v, w.shape)
    dense, pattern = loop_matrix(exact, layer, "padded", "C", "zeros")
    rows, cols = np.nonzero(pattern)
    # CSR: scipy's COO times a multi-column array skips explicit zeros (0 * NaN would vanish).
    return sp.coo_array((dense[rows, cols], (rows, cols)), shape=dense.shape).tocsr()


def forward_oracle(v: dict[str, Any], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``W vec(X_pad)`` per sample, and the sum of |terms| (the rounding scale)."""
    n = x.shape[0]
    xp = padded_input(x.astype(exact_dtype(x)), v).reshape(n, -1).T
    W = padded_operator(v)
    absW = padded_operator(v, np.abs(np.asarray(v["weight"])))
    return (W @ xp).T, (absW @ np.abs(xp)).T


def adjoint_oracle(v: dict[str, Any], dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``P^H W^H vec(dY)`` per sample, and the sum of |terms|."""
    n = dy.shape[0]
    flat = dy.reshape(n, -1).T.astype(exact_dtype(dy))
    W = padded_operator(v)
    absW = padded_operator(v, np.abs(np.asarray(v["weight"])))
    grad = (W.conj().T @ flat).T
    scale = (absW.T @ np.abs(flat)).T
    return pad_adjoint_loop(grad, v), pad_adjoint_loop(scale, v)


def pad_adjoint_loop(g: np.ndarray, v: dict[str, Any]) -> np.ndarray:
    """Add each padded position's value onto the input pixel it copies (drop zero padding)."""
    n = g.shape[0]
    size = tuple(v["input_size"])
    c = g.shape[1] // math.prod(s + lo + hi for s, (lo, hi) in zip(size, v["padding"]))
    padded = tuple(s + lo + hi for s, (lo, hi) in zip(size, v["padding"]))
    g = g.reshape(n, c, *padded)
    out = np.zeros((n, c, *size), dtype=g.dtype)
    for p in itertools.product(*(range(s) for s in padded)):
        q = [source_pixel(pp - lo, s, v.get("padding_mode", "zeros"))
             for pp, (lo, _), s in zip(p, v["padding"], size)]
        if all(qq is not None for qq in q):
            out[(slice(None), slice(None), *q)] += g[(slice(None), slice(None), *p)]
    return out.reshape(n, -1)


def unvec_loop(vector: np.ndarray, shape: tuple[int, ...], order: str) -> np.ndarray:
    """Undo the seed's vec (or the row-major one) channel by channel."""
    c, *size = shape
    per = math.prod(size)
    return np.stack([vector[i * per:(i + 1) * per].reshape(size, order=order) for i in range(c)])


def expected_dtype(*dtypes: Any) -> np.dtype:
    """The documented rule: integers and bools exact in int64, float16 in float32."""
    dt = np.result_type(*dtypes)
    if dt.kind in "biu":
        return np.dtype(np.int64)
    return np.dtype(np.float32) if dt == np.float16 else dt


def assert_matches(result: Any, expected: np.ndarray, dtype: np.dtype, scale: Any = None) -> None:
    """Same shape, the documented dtype, and values equal (integers) or within rounding."""
    result = np.asarray(result)
    dtype = np.dtype(dtype).newbyteorder("=")
    assert result.shape == expected.shape, (result.shape, expected.shape)
    assert result.dtype == dtype, (result.dtype, dtype)
    if dtype.kind in "biu":
        assert np.array_equal(result, np.real(expected).astype(dtype)), "integer result differs"
        return
    rtol = 1e-5 if dtype in (np.float32, np.complex64) else 1e-12
    with np.errstate(invalid="ignore"):
        bound = rtol * (np.abs(expected) if scale is None else np.abs(scale)) + 1e-300
        err = np.abs(result.astype(np.complex128) - expected)
        close = (err <= bound) | (result == expected)  # infinities compare equal
        nan_match = np.isnan(result) == np.isnan(expected)
    assert np.all(close | np.isnan(result)) and np.all(nan_match), f"max error {np.nanmax(err)}"


def layer_problem(v: dict[str, Any]) -> str | None:
    """Independent validity of a layer: groups, sizes, PyTorch's padding-mode limits."""
    shape = np.shape(v["weight"])
    if shape[0] % v["groups"]:
        return "groups"
    for n, k, d, (lo, hi) in zip(v["input_size"], shape[2:], v["dilation"], v["padding"]):
        if n + lo + hi < d * (k - 1) + 1:
            return "size"
        mode = v.get("padding_mode", "zeros")
        if (mode == "reflect" and max(lo, hi) >= n) or (mode == "circular" and max(lo, hi) > n):
            return "mode"
    return None


def layer_mutations(v: dict[str, Any], strings: bool = True, modes: bool = True
                    ) -> dict[str, list[Mutation]]:
    kernel = tuple(np.shape(v["weight"])[2:])
    out = {
        "stride": tuple_mutations(v["stride"], 1, False),
        "dilation": tuple_mutations(v["dilation"], 1, False),
        "padding": padding_mutations(v["padding"], strings, v["stride"], kernel, v["dilation"]),
        "groups": int_mutations(v["groups"], 1, False),
    }
    if modes:
        out["padding_mode"] = choice_mutations(v["padding_mode"], MODES)
    return out


def abs_dense(v: dict[str, Any], domain: str = "input", order: str = "C") -> np.ndarray:
    """The matrix of |weight|: each entry sums |w| over its taps, before any cancellation."""
    return dense_of(v, domain, order, weight=np.abs(np.asarray(v["weight"])))


def scale_of(abs_matrix: np.ndarray, *vectors: np.ndarray) -> np.ndarray:
    """Sum of |terms| of each output: the size rounding errors are measured against."""
    return abs_matrix @ np.abs(np.stack([x.reshape(-1) for x in vectors], axis=1)
                               .astype(np.complex128))


# Registry ------------------------------------------------------------------------------------

#: Spec factories, in registration order (each ``specs_<feature>`` module registers its own).
FACTORIES: list[Callable[[], Spec]] = []


def register(factory: Callable[[], Spec]) -> Callable[[], Spec]:
    """Register a spec factory (a decorator): every registered spec is fuzzed."""
    FACTORIES.append(factory)
    return factory


def specs() -> list[Spec]:
    """Return every registered spec, importing each ``specs_<feature>`` module of the package."""
    import importlib
    import pkgutil
    from pathlib import Path

    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name.startswith("specs_"):
            importlib.import_module(f"{__package__}.{info.name}")
    return [factory() for factory in FACTORIES]


# Oracles and checks several features share ---------------------------------------------------


def exact_dtype(*arrays: Any) -> type:
    """float64 for real data, complex128 for complex (complex arithmetic turns inf into NaN)."""
    return np.complex128 if any(np.iscomplexobj(a) for a in arrays) else np.float64


def padded_input(x: np.ndarray, v: dict[str, Any]) -> np.ndarray:
    """X_pad by definition (source_pixel), for any mode; zeros outside for zero padding."""
    n, c = x.shape[:2]
    size = tuple(v["input_size"])
    padded_size = tuple(s + lo + hi for s, (lo, hi) in zip(size, v["padding"]))
    out = np.zeros((n, c, *padded_size), dtype=exact_dtype(x))
    for p in itertools.product(*(range(s) for s in padded_size)):
        q = [source_pixel(pp - lo, s, v.get("padding_mode", "zeros"))
             for pp, (lo, _), s in zip(p, v["padding"], size)]
        if all(qq is not None for qq in q):
            out[(slice(None), slice(None), *p)] = x[(slice(None), slice(None), *q)]
    return out


def reference_values(v: dict[str, Any]) -> np.ndarray:
    A = dense_of(v)
    s = np.linalg.svd(A, compute_uv=False) if A.size else np.zeros(0)
    if s.size:
        s = np.where(s <= max(A.shape) * np.finfo(np.float64).eps * s[0], 0.0, s)
    return s


def check_sparse(result: Any, dense: np.ndarray, dtype: np.dtype) -> None:
    assert isinstance(result, sp.csr_array), type(result)
    dtype = np.dtype(dtype).newbyteorder("=")
    assert result.dtype == dtype, (result.dtype, dtype)
    got = result.toarray().astype(np.complex128)
    want = (dense.real if dtype.kind != "c" else dense).astype(dtype).astype(np.complex128)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert np.allclose(got, want, rtol=1e-6 if dtype.itemsize <= 4 else 1e-12, atol=0,
                       equal_nan=True), "matrix entries differ"
    assert result.has_canonical_format
    if result.nnz:
        assert result.indices.dtype == result.indptr.dtype


def dtype_param_mutations(allow_bool: bool = True) -> list[Mutation]:
    return [Same(None, None, "default"), Same(np.float64, np.dtype(np.float64), "float64"),
            Same("float32", np.dtype(np.float32), "'float32'"),
            Same(np.complex128, np.dtype(np.complex128), "complex128"),
            Bad(np.float16, "float16"), Bad(object, "object"), Bad("floaty", "nonsense"),
            Bad(3, "an int"), Bad("U5", "strings")]


def matrix_dtype_rule(weight_dtype: np.dtype, requested: Any, sums: bool) -> np.dtype:
    """The dtype table: as asked, else int64 for integers and bools, float32 for float16."""
    if requested is not None:
        return np.dtype(requested)
    if weight_dtype.kind in "biu":
        return np.dtype(np.int64)
    if weight_dtype == np.float16:
        return np.dtype(np.float32)
    return np.dtype(weight_dtype)


def representable(values: np.ndarray, dtype: np.dtype) -> bool:
    """Whether ``dtype`` holds the values without losing an imaginary part or an integer."""
    if values.dtype.kind == "c" and dtype.kind != "c" and np.any(values.imag):
        return False
    if dtype.kind not in "biu" or values.size == 0:
        return True
    real = values.real
    if real.dtype.kind == "f" and not np.all(np.isfinite(real) & (real == np.round(real))):
        return False
    info = (0, 1) if dtype.kind == "b" else (np.iinfo(dtype).min, np.iinfo(dtype).max)
    return bool(real.min() >= info[0] and real.max() <= info[1])


# Running one case ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What one fuzz case did: ``ok`` or the reason it is a finding."""

    spec: str
    param: str | None
    mutation: str
    status: str  # "result", "refused", "memory", or a finding: "wrong", "unnamed", "crash", ...
    detail: str = ""

    @property
    def finding(self) -> bool:
        return self.status not in ("result", "refused", "memory")


def _names(message: str, param: str) -> bool:
    """Whether the message names the parameter: `param`, or `param[i]` for an item of it."""
    return re.search(rf"`{re.escape(param)}(\[\d+\])?`", message) is not None



def call_values(base: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in base.items() if not k.startswith("_")}


def run_case(spec: Spec, base: dict[str, Any], param: str | None, mutation: Mutation | None
             ) -> Outcome:
    """Call the function with one argument mutated and judge what it did."""
    values = call_values(base)
    accepted = spec.accepted()
    kwargs = {k: v for k, v in values.items() if k in accepted}
    note = "base"
    if param is not None and mutation is not None:
        kwargs[param] = mutation.written
        note = f"{type(mutation).__name__}: {mutation.note}"
        if isinstance(mutation, Same):
            values[param] = mutation.value
    tracemalloc.start()
    try:
        result = spec.function(**kwargs)
        error: BaseException | None = None
    except (TypeError, ValueError, MemoryError) as err:
        result, error = None, err
    except Exception as err:  # anything else is a finding
        tracemalloc.stop()
        return Outcome(spec.name, param, note, "crash", f"{type(err).__name__}: {err}"[:300])
    finally:
        peak = tracemalloc.get_traced_memory()[1] if tracemalloc.is_tracing() else 0
        tracemalloc.stop()
    if peak > PEAK_LIMIT:
        return Outcome(spec.name, param, note, "allocation", f"peak {peak} bytes")
    expected_bad = isinstance(mutation, (Bad, Unaffordable))
    invalid = None if expected_bad else spec.problem(values)
    if error is not None:
        message = str(error)
        if isinstance(error, MemoryError):
            if "needs an estimated" not in message or not isinstance(error, convop.BudgetError):
                return Outcome(spec.name, param, note, "bare-memory", message[:300])
            if not isinstance(mutation, Unaffordable) and not _unaffordable_values(values):
                return Outcome(spec.name, param, note, "refused-valid", message[:300])
            return Outcome(spec.name, param, note, "memory")
        if expected_bad or invalid is not None:
            names = [param] if expected_bad else [n for n in values if not n.startswith("_")]
            if param is not None and not _names(message, param) and expected_bad:
                return Outcome(spec.name, param, note, "unnamed",
                               f"{type(error).__name__}: {message}"[:300])
            if not any(_names(message, n) for n in names):
                return Outcome(spec.name, param, note, "unnamed",
                               f"{type(error).__name__}: {message}"[:300])
            return Outcome(spec.name, param, note, "refused")
        return Outcome(spec.name, param, note, "rejected-valid",
                       f"{type(error).__name__}: {message}"[:300])
    if expected_bad:
        return Outcome(spec.name, param, note, "accepted-bad", repr(result)[:200])
    if invalid is not None:
        return Outcome(spec.name, param, note, "accepted-invalid", f"{invalid}: {result!r}"[:200])
    try:
        with np.errstate(all="ignore"):  # inf and NaN inputs are part of the fuzz
            spec.check(values, result)
    except AssertionError as err:
        return Outcome(spec.name, param, note, "wrong", str(err)[:300])
    except Exception as err:  # the oracle itself failed: report it, do not hide it
        return Outcome(spec.name, param, note, "oracle-error", f"{type(err).__name__}: {err}"[:300])
    return Outcome(spec.name, param, note, "result")


def _unaffordable_values(values: dict[str, Any]) -> bool:
    return values.get("max_bytes") == 1


@st.composite
def cases(draw: Any, spec: Spec) -> tuple[dict[str, Any], str | None, Mutation | None]:
    base = spec.base(draw)
    options = spec.mutations(base)
    if not options or draw(st.integers(0, 9)) == 0:
        return base, None, None
    param = draw(st.sampled_from(sorted(options)))
    mutation = draw(st.sampled_from(options[param]))
    return base, param, mutation


def _collect(spec: Spec, per_function: int, outcomes: list[Outcome]) -> Callable[[], None]:
    """A Hypothesis test that runs ``per_function`` cases of ``spec`` into ``outcomes``."""
    from hypothesis import HealthCheck, given, settings

    @settings(max_examples=per_function, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(cases(spec))
    def one(case: Any) -> None:
        outcomes.append(run_case(spec, *case))

    return one


def survey(per_function: int) -> int:
    """Print how each function handled ``per_function`` random cases; return the findings."""
    findings = 0
    total = 0
    counts: dict[str, int] = {}
    for spec in specs():
        outcomes: list[Outcome] = []
        _collect(spec, per_function, outcomes)()
        total += len(outcomes)
        shown: set[tuple[Any, ...]] = set()
        for o in outcomes:
            counts[o.status] = counts.get(o.status, 0) + 1
            if o.finding:
                findings += 1
                key = (o.param, o.mutation, o.status)
                if key not in shown:
                    shown.add(key)
                    print(f"FINDING {o.spec}({o.param}) {o.mutation}: {o.status} {o.detail}")
        print(f"{spec.name:28} {len(outcomes):5} calls  " + ", ".join(
            f"{k} {sum(o.status == k for o in outcomes)}" for k in ("result", "refused", "memory")))
    print(f"total {total} calls: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return findings
