"""spectral_density: the distribution of the layer's own singular values, with its band."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.sparse.linalg as sla

import convop
from convop.errors import BudgetError
from convop.spectral import density as density_module

#: Small layers of every kind the issue names: zero-padded, strided, dilated, grouped,
#: reflect-padded, plus a transposed-shaped (wide) one and a rank-deficient one.
LAYERS = {
    "zeros": ((8, 8, 3, 3), (16, 16), dict(padding=1)),
    "strided": ((8, 8, 3, 3), (16, 16), dict(stride=2, padding=1)),
    "dilated": ((8, 8, 3, 3), (16, 16), dict(dilation=2, padding=2)),
    "grouped": ((8, 4, 3, 3), (16, 16), dict(groups=2, padding=1)),
    "reflect": ((8, 8, 3, 3), (16, 16), dict(padding=1, padding_mode="reflect")),
    "widening": ((16, 4, 3, 3), (16, 16), dict(padding=1)),
}


def _truth(weight, size, layer):
    return np.sort(convop.singular_values(weight, size, **layer))


def _steps(values):
    """The exact distribution function at each value and just below it (ties counted)."""
    n = values.size
    return (np.searchsorted(values, values, side="right") / n,
            np.searchsorted(values, values, side="left") / n)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_quadrature_band_holds_the_dense_svd_and_the_estimate_is_within_two_percent(name):
    shape, size, layer = LAYERS[name]
    weight = np.random.default_rng(len(name)).standard_normal(shape)
    values = _truth(weight, size, layer)
    d = convop.spectral_density(weight, size, method="slq", tol=0.05, rng=1, **layer)
    assert d.method == "slq" and d.count == values.size and d.values is None
    assert d.band <= 0.05
    at, before = _steps(values)
    below = np.nextafter(values, -np.inf)
    lower, upper = d.cdf_bounds(values)
    assert np.all(lower <= at + 1e-12) and np.all(at <= upper + 1e-12)
    lower, upper = d.cdf_bounds(below)
    assert np.all(lower <= before + 1e-12) and np.all(before <= upper + 1e-12)
    # The estimate at every quantile: within 0.02 of the exact fraction on either side.
    estimate = d.cdf(values)
    assert np.max(np.minimum(abs(estimate - at), abs(estimate - before))) <= 0.02
    np.testing.assert_allclose(d.sigma_max, values[-1], rtol=1e-7)
    np.testing.assert_allclose(d.sigma_min, values[0], rtol=1e-6, atol=1e-12)


def test_the_band_is_not_vacuous_another_layer_falls_outside_it():
    shape, size, layer = LAYERS["zeros"]
    weight = np.random.default_rng(0).standard_normal(shape)
    d = convop.spectral_density(weight, size, method="slq", tol=0.05, rng=0, **layer)
    other = _truth(weight * 1.3, size, layer)  # every value 30% larger
    lower, upper = d.cdf_bounds(other)
    at, _ = _steps(other)
    assert np.any((at < lower) | (at > upper))


def test_circular_layers_are_exact_through_the_fft():
    weight = np.random.default_rng(1).standard_normal((6, 6, 3, 3))
    d = convop.spectral_density(weight, (12, 12), padding=1, padding_mode="circular")
    values = np.sort(convop.circular_singular_values(weight, (12, 12)))
    assert d.method == "fft" and d.band == 0.0 and d.probes == 0
    np.testing.assert_array_equal(d.values, values)
    at, _ = _steps(values)
    np.testing.assert_array_equal(d.cdf(values), at)
    lower, upper = d.cdf_bounds(values)
    np.testing.assert_array_equal(lower, upper)
    assert d.sigma_max == values[-1] and d.sigma_min == values[0]


def test_small_layers_are_exact_through_a_dense_svd_and_the_gram_matrix():
    shape, size, layer = LAYERS["strided"]
    weight = np.random.default_rng(2).standard_normal(shape)
    d = convop.spectral_density(weight, size, **layer)
    assert d.method == "dense"
    np.testing.assert_allclose(d.values, _truth(weight, size, layer), rtol=1e-12, atol=1e-12)
    # 2 -> 8 channels at 32x32: 2048 values, 16.8M entries: the Gram matrix of the input side.
    weight = np.random.default_rng(3).standard_normal((8, 2, 3, 3))
    d = convop.spectral_density(weight, (32, 32), padding=1)
    assert d.method == "gram" and d.count == 2048
    dense = np.linalg.svd(convop.conv_matrix(weight, (32, 32), padding=1,
                                             domain="input").toarray(), compute_uv=False)
    np.testing.assert_allclose(d.values, np.sort(dense), rtol=1e-9,
                               atol=math.sqrt(2048 * 2.2e-16) * dense[0])
    np.testing.assert_allclose(d.sigma_min, dense[-1], rtol=1e-8)


def test_density_integrates_to_one_and_mass_matches_the_histogram():
    shape, size, layer = LAYERS["dilated"]
    weight = np.random.default_rng(4).standard_normal(shape)
    exact = convop.spectral_density(weight, size, bins=20, **layer)
    assert np.isclose(np.sum(exact.density * np.diff(exact.edges)), 1.0)
    counts, _ = np.histogram(exact.values, exact.edges)
    np.testing.assert_allclose(exact.density * np.diff(exact.edges) * exact.count, counts)
    mass, lower, upper = exact.mass(exact.edges)  # (a, b]: sigma_min on the left edge is out
    np.testing.assert_allclose(mass * exact.count, counts - np.eye(1, 20, 0)[0])
    np.testing.assert_array_equal(lower, upper)
    quad = convop.spectral_density(weight, size, bins=20, method="slq", tol=0.05, rng=0,
                                   **layer)
    mass, lower, upper = quad.mass(quad.edges)
    assert np.all(lower <= mass + 1e-12) and np.all(mass <= upper + 1e-12)
    assert np.isclose(mass.sum(), 1.0, atol=0.05)
    assert quad.grid.shape == (20,) and np.all(np.diff(quad.grid) > 0)


def test_float32_products_do_not_move_the_answer(monkeypatch):
    shape, size, layer = LAYERS["zeros"]
    weight = np.random.default_rng(5).standard_normal(shape)
    fast = convop.spectral_density(weight, size, method="slq", steps=60, probes=3, rng=7,
                                   **layer)
    monkeypatch.setattr(density_module, "FLOAT32_TOL", 1.0)  # float64 products
    slow = convop.spectral_density(weight, size, method="slq", steps=60, probes=3, rng=7,
                                   **layer)
    x = np.linspace(0, fast.sigma_max, 400)
    assert np.max(abs(fast.cdf(x) - slow.cdf(x))) < 1e-3
    assert fast.steps == slow.steps == 180


def test_complex_layers_sparse_matrices_and_operators():
    rng = np.random.default_rng(6)
    weight = rng.standard_normal((6, 6, 3, 3)) + 1j * rng.standard_normal((6, 6, 3, 3))
    values = _truth(weight, (14, 14), dict(padding=1))
    d = convop.spectral_density(weight, (14, 14), padding=1, method="slq", tol=0.05, rng=0)
    at, _ = _steps(values)
    lower, upper = d.cdf_bounds(values)
    assert np.all(lower <= at + 1e-12) and np.all(at <= upper + 1e-12)
    W = convop.conv_matrix(weight, (14, 14), padding=1, domain="input")
    from_matrix = convop.spectral_density(W, method="slq", tol=0.05, rng=0)
    assert from_matrix.sigma_min is not None
    np.testing.assert_allclose(from_matrix.sigma_max, values[-1], rtol=1e-7)
    op = sla.aslinearoperator(W)
    from_operator = convop.spectral_density(op, method="slq", tol=0.05, rng=0)
    assert from_operator.sigma_min is None  # no explicit matrix: the support starts at 0
    lower, upper = from_operator.cdf_bounds(values)
    assert np.all(lower <= at + 1e-12) and np.all(at <= upper + 1e-12)


def test_clusters_and_rank_deficiency_stay_inside_the_band():
    # Rank one in the channels: most values are 0, a point mass the band must cover.
    weight = np.ones((8, 8, 3, 3))
    values = _truth(weight, (12, 12), dict(padding=1))
    d = convop.spectral_density(weight, (12, 12), padding=1, method="slq", tol=0.05, rng=0)
    at, before = _steps(values)
    lower, upper = d.cdf_bounds(values)
    assert np.all(lower <= at + 1e-12) and np.all(at <= upper + 1e-12)
    # An orthogonal circular layer: every value 1 (the FFT), and through the quadrature
    # the support [sigma_min, sigma_max] holds the jump.
    q, _ = np.linalg.qr(np.random.default_rng(8).standard_normal((8, 8)))
    ortho = q[:, :, None, None]
    d = convop.spectral_density(ortho, (12, 12), padding_mode="circular")
    np.testing.assert_allclose(d.values, 1.0, rtol=1e-12)
    q = convop.spectral_density(ortho, (12, 12), method="slq", rng=0)
    assert q.cdf(0.999) == 0.0 and q.cdf(1.001) == 1.0


def test_resolving_the_band_refines_with_more_steps():
    shape, size, layer = LAYERS["zeros"]
    weight = np.random.default_rng(9).standard_normal(shape)
    coarse = convop.spectral_density(weight, size, method="slq", steps=20, probes=4, rng=0,
                                      **layer)
    fine = convop.spectral_density(weight, size, method="slq", steps=200, probes=4, rng=0,
                                   **layer)
    assert fine.band < coarse.band
    assert "band +-" in repr(fine) and "4 probes" in repr(fine)


def test_exact_is_refused_where_it_would_be_a_dense_svd_of_a_large_operator():
    weight = np.zeros((64, 64, 3, 3))
    weight[:, :, 1, 1] = np.eye(64)
    with pytest.raises(ValueError, match="method='exact'.*needs a circular layer.*4096"):
        convop.spectral_density(weight, (56, 56), padding=1, method="exact")


def test_a_budget_too_small_for_the_basis_is_refused_with_an_estimate():
    weight = np.random.default_rng(10).standard_normal((32, 32, 3, 3))
    with pytest.raises(BudgetError, match="Lanczos vectors"):
        convop.spectral_density(weight, (32, 32), padding=1, method="slq", sigma_max=1.0,
                                sigma_min=0.0, max_bytes=20 * 2**20)


def test_known_extremes_are_not_recomputed():
    shape, size, layer = LAYERS["zeros"]
    weight = np.random.default_rng(11).standard_normal(shape)
    d = convop.spectral_density(weight, size, method="slq", sigma_max=100.0, sigma_min=0.0,
                                steps=10, probes=1, rng=0, **layer)
    assert d.sigma_max == 100.0 and d.sigma_min == 0.0 and d.edges[-1] == 100.0


def test_zero_layer_is_exact():
    d = convop.spectral_density(np.zeros((4, 4, 3, 3)), (8, 8), padding=1)
    assert d.method == "dense" and d.sigma_max == 0.0 and np.all(d.values == 0)
    assert d.cdf(0.0) == 1.0


def test_to_dict_is_plain():
    d = convop.spectral_density(np.ones((2, 2, 3, 3)), (6, 6), padding=1, bins=5)
    out = d.to_dict()
    assert out["method"] == "dense" and len(out["density"]) == 5 and len(out["edges"]) == 6
    import json

    json.dumps(out)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    (dict(tol=0.0), ValueError, "`tol` must be a float in"),
    (dict(tol=0.7), ValueError, "`tol` must be a float in"),
    (dict(probes=0), ValueError, "`probes`"),
    (dict(steps=0), ValueError, "`steps`"),
    (dict(bins=0), ValueError, "`bins`"),
    (dict(method="kpm"), ValueError, "`method`"),
    (dict(sigma_max=-1.0), ValueError, "`sigma_max` must be a finite non-negative"),
    (dict(sigma_min=float("nan")), ValueError, "`sigma_min` must be a finite non-negative"),
    (dict(sigma_max=True), ValueError, "`sigma_max`"),
    (dict(rtol=2.0), ValueError, "`rtol`"),
    (dict(progress="yes"), TypeError, "`progress`"),
])
def test_bad_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        convop.spectral_density(np.ones((2, 2, 3, 3)), (6, 6), **kwargs)


def test_mass_refuses_bad_edges():
    d = convop.spectral_density(np.ones((2, 2, 3, 3)), (6, 6), padding=1)
    with pytest.raises(ValueError, match="`edges` must be a 1-D increasing"):
        d.mass([1.0, 0.5])


# In the audit and on the command line ----------------------------------------------------


def test_the_audit_stores_each_layers_density_and_draws_them(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(6, 6, 3, padding=1, padding_mode="circular"), torch.nn.ReLU(),
        torch.nn.ConvTranspose2d(6, 2, 4, stride=2, padding=1)).double()
    report = convop.audit(model, (3, 10, 10), density=True)
    for row in report.layers:
        assert isinstance(row.density, convop.SpectralDensity)
        weight = dict(model.named_modules())[row.name].weight.detach().numpy()
        if row.kind.startswith("ConvTranspose"):  # the same values as its convolution
            values = np.linalg.svd(convop.conv_transpose_matrix(
                weight, (10, 10), stride=2, padding=1).toarray(), compute_uv=False)
        else:
            values = np.linalg.svd(convop.conv_matrix(
                weight, (10, 10), padding=1, padding_mode=row.layer["padding_mode"],
                domain="input").toarray(), compute_uv=False)
        np.testing.assert_allclose(row.density.values, np.sort(values), rtol=1e-9, atol=1e-12)
        assert row.density.sigma_max == pytest.approx(row.sigma_max, rel=1e-8)
    assert [r.density.method for r in report.layers] == ["dense", "fft", "dense"]
    data = report.to_dict()
    assert data["layers"][1]["density"]["method"] == "fft"
    json.dumps(data)
    figure = report.plot_densities(columns=2)
    assert len([ax for ax in figure.axes if ax.get_visible() and ax.get_title()]) == 3
    figure.savefig(tmp_path / "densities.png")
    plain = convop.audit(model, (3, 10, 10))
    assert all(r.density is None for r in plain.layers)
    with pytest.raises(ValueError, match="density=True"):
        plain.plot_densities()
    with pytest.raises(TypeError, match="`density`"):
        convop.audit(model, (3, 10, 10), density="yes")


def test_cli_audit_density_writes_the_picture(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    from convop.cli import main

    (tmp_path / "densitymodel.py").write_text(
        "import torch\n"
        "def build():\n"
        "    torch.manual_seed(0)\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.ReLU(),\n"
        "                               torch.nn.Conv2d(3, 2, 3))\n")
    monkeypatch.chdir(tmp_path)
    assert main(["audit", "densitymodel:build", "--in", "2x6x6", "--density", "--json",
                 "--plot", "pics"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert all(row["density"]["method"] == "dense" for row in data["layers"])
    assert (tmp_path / "pics" / "densities.png").stat().st_size > 5000
