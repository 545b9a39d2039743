"""convop.audit: every convolution of a model, exact and estimated, checked independently."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

import convop

torch = pytest.importorskip("torch")
import convop.torch  # noqa: E402 - after the skip: it needs torch

nn = torch.nn


class Small(nn.Module):
    """A dozen convolutions: strides, groups, depthwise, dilation, every mode, a transpose."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.down = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=2)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8, padding_mode="reflect")
        self.dilated = nn.Conv2d(8, 6, 3, padding=2, dilation=2, padding_mode="replicate")
        self.circular = nn.Conv2d(6, 6, 3, padding=1, padding_mode="circular")
        self.shared = nn.Conv2d(6, 6, 1)  # used twice
        self.up = nn.ConvTranspose2d(6, 4, 3, stride=2, padding=1, output_padding=1)
        self.head = nn.Conv2d(4, 2, (1, 3), padding=(0, 1))

    def forward(self, x):
        x = self.down(torch.relu(self.stem(x)))
        x = self.circular(self.dilated(self.depthwise(x)))
        x = self.shared(self.shared(x))
        return self.head(self.up(x))


@pytest.fixture(scope="module")
def report():
    torch.manual_seed(0)
    model = Small().double()
    return model, convop.audit(model, (3, 10, 10), rtol=1e-10, sigma_min=True)


def dense_norms(matrix):
    values = np.linalg.svd(matrix.toarray(), compute_uv=False)
    return values[0], values[-1]


def test_every_convolution_with_the_input_it_sees(report):
    _, r = report
    names = [row.name for row in r.layers]
    assert names == ["stem", "down", "depthwise", "dilated", "circular", "shared", "up", "head"]
    sizes = {row.name: row.input_size for row in r.layers}
    assert sizes["stem"] == (10, 10) and sizes["down"] == (10, 10) and sizes["up"] == (5, 5)
    assert sizes["head"] == (10, 10)
    assert {row.name: row.calls for row in r.layers}["shared"] == 2


def test_exact_values_equal_dense_svds(report):
    model, r = report
    for row in r.layers:
        module = dict(model.named_modules())[row.name]
        W = convop.torch.conv_matrix_from_module(module, row.input_size)
        top, low = dense_norms(W)
        assert row.matrix_shape == W.shape and row.nnz == W.nnz or row.kind.startswith(
            "ConvTranspose")
        assert row.sigma_max == pytest.approx(top, rel=1e-9)
        tol = max(W.shape) * np.finfo(float).eps * top
        assert row.sigma_min == pytest.approx(0.0 if low <= tol else low, rel=1e-7,
                                              abs=1e-12 * top)


def test_estimators_equal_independent_computations(report):
    model, r = report
    for row in r.layers:
        module = dict(model.named_modules())[row.name]
        w = module.weight.detach().numpy()
        assert row.reshaped_kernel == pytest.approx(
            np.linalg.svd(w.reshape(w.shape[0], -1), compute_uv=False)[0], rel=1e-12)
        assert row.gram_bound >= row.sigma_max * (1 - 1e-12)
        if row.kind == "Conv2d":
            stride = module.stride
            size = tuple(-(-n // s) * s for n, s in zip(row.input_size, stride))
            k, d = module.kernel_size, module.dilation
            pad = tuple(((d_ * (k_ - 1)) // 2, d_ * (k_ - 1) - (d_ * (k_ - 1)) // 2)
                        for k_, d_ in zip(k, d))
            C = convop.conv_matrix(w, size, stride=stride, padding=pad, dilation=d,
                                   groups=module.groups, padding_mode="circular",
                                   domain="input")
            assert row.circular == pytest.approx(dense_norms(C)[0], rel=1e-9)


def test_report_forms_agree(report):
    _, r = report
    data = json.loads(r.to_json())
    assert [row["name"] for row in data["layers"]] == [row.name for row in r.layers]
    assert data["products"]["sigma_max"] == pytest.approx(
        np.prod([row.sigma_max ** row.calls for row in r.layers]))
    rows = list(csv.DictReader(io.StringIO(r.to_csv())))
    assert float(rows[0]["sigma_max"]) == pytest.approx(r.layers[0].sigma_max)
    text = str(r)
    assert "stem" in text and "sequential network only" in text


def test_bad_arguments_name_the_parameter():
    with pytest.raises(TypeError, match="`model`"):
        convop.audit(42, (3, 8, 8))
    with pytest.raises(ValueError, match="`model` 'resnet' is not a file"):
        convop.audit("resnet", (3, 8, 8))
    with pytest.raises(ValueError, match="`input_shape`"):
        convop.audit(nn.Conv2d(3, 4, 3), (3, 0, 8))


def test_a_layer_over_the_memory_budget_is_reported_not_crashed_on(monkeypatch):
    import convop.auditing.layer as layer_module

    real = layer_module.spectral_norm

    def refuse_wide(weight, *args, **kwargs):
        if weight.shape[0] == 8:
            raise MemoryError("one product of the layer operator needs an estimated 9 GiB")
        return real(weight, *args, **kwargs)

    monkeypatch.setattr(layer_module, "spectral_norm", refuse_wide)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 2, 3)).double()
    report = convop.audit(model, (3, 8, 8))
    first, second = report.layers
    assert first.note.startswith("refused: one product") and np.isnan(first.sigma_max)
    assert second.sigma_max > 0 and not second.note
    assert "refused" in report.to_csv()


def test_the_picture_has_a_bar_per_layer_and_estimator(report, tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot")
    _, r = report
    ax = r.plot()
    assert len(ax.patches) == 4 * len(r.layers) and ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == [row.name for row in r.layers]
    plt.close("all")


# ONNX models ------------------------------------------------------------------------------


def _export(model, shape):
    onnx = pytest.importorskip("onnx")
    import warnings

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(model, (torch.zeros((1, *shape), dtype=torch.float64),), buffer,
                          dynamo=False)
    return onnx.load_from_string(buffer.getvalue())


def test_the_onnx_export_gives_the_same_table(report, tmp_path):
    model, from_torch = report
    exported = _export(model, (3, 10, 10))
    path = tmp_path / "small.onnx"
    path.write_bytes(exported.SerializeToString())
    for source in (exported, path, str(path)):
        from_onnx = convop.audit(source, (3, 10, 10), rtol=1e-10, sigma_min=True)
        fields = ("name", "kind", "weight_shape", "input_size", "layer", "matrix_shape", "nnz",
                  "calls", "note")
        for a, b in zip(from_torch.layers, from_onnx.layers, strict=True):
            assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]
            for f in ("sigma_max", "reshaped_kernel", "circular", "gram_bound", "sigma_min"):
                assert getattr(b, f) == pytest.approx(getattr(a, f), rel=1e-9), (a.name, f)
    assert from_onnx.model == "small.onnx"


def _node_model():
    """A hand-made ONNX graph: SAME_LOWER with a stride, a reflect Pad, a folded weight."""
    onnx = pytest.importorskip("onnx")
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    rng = np.random.default_rng(0)
    w1, w2 = rng.standard_normal((4, 2, 3, 3)), rng.standard_normal((3, 4, 2, 3))
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2 / 2, "half_w2"),
             numpy_helper.from_array(np.array(2.0), "two"),
             numpy_helper.from_array(np.array([0, 0, 1, 2, 0, 0, 2, 0], dtype=np.int64), "pads")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], auto_pad="SAME_LOWER", strides=[2, 2]),
             helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Pad", ["b", "pads"], ["c"], mode="reflect"),
             helper.make_node("Mul", ["half_w2", "two"], ["w2"]),  # a computed constant weight
             helper.make_node("Conv", ["c", "w2"], ["y"], dilations=[1, 2])]
    f64 = onnx.TensorProto.DOUBLE
    graph = helper.make_graph(nodes, "handmade", [helper.make_tensor_value_info(
        "x", f64, ["N", 2, "H", "W"])], [helper.make_tensor_value_info("y", f64, None)],
        initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), w1, w2


def test_onnx_nodes_are_read_with_their_padding_exactly():
    model, w1, w2 = _node_model()
    report = convop.audit(model, (2, 9, 8), rtol=1e-12)
    first, second = report.layers
    # SAME_LOWER, stride 2, 9x8: totals 2 and 1, the odd pixel before.
    assert first.layer["padding"] == ((1, 1), (1, 0)) and first.input_size == (9, 8)
    assert second.input_size == (5, 4) and second.layer["padding_mode"] == "reflect"
    assert second.layer["padding"] == ((1, 2), (2, 0))
    W1 = convop.conv_matrix(w1, (9, 8), stride=2, padding=((1, 1), (1, 0)), domain="input")
    W2 = convop.conv_matrix(w2, (5, 4), padding=((1, 2), (2, 0)), dilation=(1, 2),
                            padding_mode="reflect", domain="input")
    for row, W in ((first, W1), (second, W2)):
        assert row.sigma_max == pytest.approx(dense_norms(W)[0], rel=1e-11)
        assert row.matrix_shape == W.shape and row.nnz == W.nnz


def test_onnx_input_shape_must_fit_the_model():
    model, _, _ = _node_model()
    with pytest.raises(ValueError, match="`input_shape`"):
        convop.audit(model, (2, 9, 8, 4))


def test_cli_audits_an_onnx_file(tmp_path, capsys):
    from convop.cli import main

    model, _, _ = _node_model()
    path = tmp_path / "handmade.onnx"
    path.write_bytes(model.SerializeToString())
    assert main(["audit", str(path), "--in", "2x9x8", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == "handmade.onnx" and len(data["layers"]) == 2
    assert main(["audit", str(tmp_path / "missing.onnx"), "--in", "2x9x8"]) == 2
    assert "is not a file" in capsys.readouterr().err
    assert main(["audit", str(path), "--in", "2x9x8x3"]) == 2
    assert "argument --in" in capsys.readouterr().err


# The network bound across residual connections -------------------------------------------


class Residual(nn.Module):
    """conv -> BN -> ReLU -> maxpool, a residual block with a 1x1 shortcut, avgpool, linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.conv1 = nn.Conv2d(4, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 3, 3, padding=1, padding_mode="circular")
        self.shortcut = nn.Conv2d(4, 3, 1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))

    def forward(self, x):
        x = self.pool(torch.relu(self.bn(self.stem(x))))
        x = self.conv2(torch.relu(self.conv1(x))) + self.shortcut(x)
        return self.head(torch.relu(x))


@pytest.fixture(scope="module")
def residual():
    torch.manual_seed(1)
    model = Residual().double()
    with torch.no_grad():  # a batch norm that is not the identity
        model.bn.running_var.uniform_(0.5, 2.0)
        model.bn.weight.uniform_(-1.5, 1.5)
    return model, convop.audit(model, (2, 8, 8), rtol=1e-12)


def test_the_network_bound_follows_the_rules(residual):
    model, r = residual
    s = {row.name: row.sigma_max for row in r.layers}
    bn = model.bn
    with torch.no_grad():
        bn_scale = float((bn.weight.abs() / torch.sqrt(bn.running_var + bn.eps)).max())
        linear = float(torch.linalg.matrix_norm(model.head[2].weight, 2))
    # maxpool 3/2: each pixel in at most 2x2 windows; avgpool 4x4 -> 1: sqrt(1/16).
    expected = (s["stem"] * bn_scale * 2.0 * (s["conv2"] * s["conv1"] + s["shortcut"])
                * 0.25 * linear)
    assert r.network_bound["sigma_max"] == pytest.approx(expected, rel=1e-12)
    assert r.network_bound["gram_bound"] >= r.network_bound["sigma_max"]
    assert "residual" in str(r) and r.to_dict()["network_bound"] == r.network_bound


def test_the_network_bound_is_never_below_the_jacobian_norm(residual):
    # The network is piecewise linear: its Jacobian's norm at any input is a lower bound of
    # its Lipschitz constant, so no sample may exceed the bound.
    model, r = residual
    model.eval()
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = torch.from_numpy(rng.standard_normal((1, 2, 8, 8)) * rng.uniform(0.1, 10))
        J = torch.autograd.functional.jacobian(model, x).reshape(2, -1)
        assert float(torch.linalg.matrix_norm(J, 2)) <= r.network_bound["sigma_max"]


def test_a_model_without_a_rule_or_a_graph_says_so():
    class Gated(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1)

        def forward(self, x):
            return self.conv(x) * x  # a product of two tensors: no Lipschitz constant

    class Branching(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1)

        def forward(self, x):
            return self.conv(x) if x.sum() > 0 else x  # data-dependent: fx cannot trace

    gated = convop.audit(Gated().double(), (2, 6, 6))
    assert gated.network_bound is None and "product of two tensors" in gated.network_note
    branching = convop.audit(Branching().double(), (2, 6, 6))
    assert branching.network_bound is None and "torch.fx cannot trace" in str(branching)


def test_the_onnx_network_bound_matches_the_torch_one(report, residual):
    # Without batch norms the graphs are the same maps: the same bound, padding folded.
    model, from_torch = report
    from_onnx = convop.audit(_export(model, (3, 10, 10)), (3, 10, 10), rtol=1e-10)
    for field, value in from_torch.network_bound.items():
        assert from_onnx.network_bound[field] == pytest.approx(value, rel=1e-9), field
    # The exporter folds the batch norm into the stem's weight: a bound at most the
    # torch one (the fused layer's norm is at most the product), never below the
    # Jacobian's norm.
    model, from_torch = residual
    exported = convop.audit(_export(model.eval(), (2, 8, 8)), (2, 8, 8), rtol=1e-12)
    bound = exported.network_bound["sigma_max"]
    assert bound <= from_torch.network_bound["sigma_max"] * (1 + 1e-12)
    rng = np.random.default_rng(1)
    for _ in range(10):
        x = torch.from_numpy(rng.standard_normal((1, 2, 8, 8)))
        J = torch.autograd.functional.jacobian(model, x).reshape(2, -1)
        assert float(torch.linalg.matrix_norm(J, 2)) <= bound


def test_the_onnx_network_bound_of_hand_made_nodes():
    model, _, _ = _node_model()
    report = convop.audit(model, (2, 9, 8), rtol=1e-12)
    first, second = report.layers
    # Conv -> Relu -> reflect Pad (folded into the second conv's norm) -> Conv.
    assert report.network_bound["sigma_max"] == pytest.approx(
        first.sigma_max * second.sigma_max, rel=1e-12)


def test_the_network_bound_walks_graphs_deeper_than_the_recursion_limit():
    import sys

    from convop.auditing.lipschitz import Step, walk

    depth = 3 * sys.getrecursionlimit()
    steps = {0: Step("input")}
    for i in range(1, depth):  # residual steps x + 0.5 x, each undone by a scale by 2/3
        steps[i] = Step("sum", (i - 1, -i)) if i % 2 else Step("scale", (i - 1,), 2 / 3)
        steps[-i] = Step("scale", (i - 1,), 0.5)
    assert depth % 2 == 0 and walk(steps, depth - 1, "sigma_max") == pytest.approx(1.5)


# The l1 and l-infinity norms ----------------------------------------------------------------


@pytest.fixture(scope="module")
def normed(report):
    model, _ = report
    return model, convop.audit(model, (3, 10, 10), rtol=1e-10, norms=(1, np.inf))


def test_l1_and_linf_columns_equal_the_layers_matrices(normed):
    # Each layer's exact matrix from its module (a transposed layer's own matrix).
    model, r = normed
    for row in r.layers:
        W = convop.torch.conv_matrix_from_module(dict(model.named_modules())[row.name],
                                                 row.input_size)
        A = np.abs(W.toarray())
        assert row.norm_1 == pytest.approx(A.sum(axis=0).max(), rel=1e-12), row.name
        assert row.norm_inf == pytest.approx(A.sum(axis=1).max(), rel=1e-12), row.name


def test_a_trimmed_transposed_layer_counts_its_kept_rows_only():
    # output_padding 1 >= stride 1 (dilation 2): the convolution has rows the transposed
    # convolution's input does not reach; its norms are those of the kept rows' transpose.
    up = nn.ConvTranspose2d(2, 3, 3, stride=1, dilation=2, output_padding=1).double()
    r = convop.audit(nn.Sequential(up), (2, 5, 4), norms=(1, np.inf))
    T = np.abs(convop.torch.conv_matrix_from_module(up, (5, 4)).toarray())
    row = r.layers[0]
    assert row.norm_1 == pytest.approx(T.sum(axis=0).max(), rel=1e-12)
    assert row.norm_inf == pytest.approx(T.sum(axis=1).max(), rel=1e-12)


def test_the_table_and_the_forms_show_the_columns_asked_for(report, normed):
    _, plain = report
    _, r = normed
    assert "l1 norm" in str(r) and "l-inf norm" in str(r) and "l1 norm" not in str(plain)
    assert "sigma_min" in str(plain) and "cond" in str(plain)  # asked for there
    rows = list(csv.DictReader(io.StringIO(r.to_csv())))
    assert float(rows[0]["norm_inf"]) == pytest.approx(r.layers[0].norm_inf)
    assert json.loads(r.to_json())["layers"][0]["norm_1"] == r.layers[0].norm_1
    assert "network Lipschitz bound in l-infinity" in str(r)


def test_bad_norms_are_refused():
    model = nn.Sequential(nn.Conv2d(2, 2, 3)).double()
    with pytest.raises(ValueError, match="`norms` must hold 1 and numpy.inf"):
        convop.audit(model, (2, 6, 6), norms=(3,))
    with pytest.raises(TypeError, match="`norms`"):
        convop.audit(model, (2, 6, 6), norms="inf")


@pytest.fixture(scope="module")
def residual_normed(residual):
    model, _ = residual
    return model, convop.audit(model, (2, 8, 8), rtol=1e-12, norms=(1, np.inf))


def test_the_network_bound_per_norm_follows_the_rules(residual_normed):
    model, r = residual_normed
    bn = model.bn
    with torch.no_grad():
        bn_scale = float((bn.weight.abs() / torch.sqrt(bn.running_var + bn.eps)).max())
        linear = model.head[2].weight.numpy()
    for field, p, pool, avg in (("norm_1", 1, 4.0, 1 / 16), ("norm_inf", np.inf, 1.0, 1.0)):
        s = {row.name: getattr(row, field) for row in r.layers}
        # maxpool 3/2 covers a pixel at most 2x2 times: l1 factor 4, l-inf 1; the
        # adaptive average of 4x4 pixels: 1/16 in l1, 1 in l-inf.
        expected = (s["stem"] * bn_scale * pool * (s["conv2"] * s["conv1"] + s["shortcut"])
                    * avg * np.linalg.norm(linear, p))
        assert r.network_bound[field] == pytest.approx(expected, rel=1e-12), field


def test_the_network_bounds_per_norm_are_never_below_the_jacobian_norms(residual_normed):
    model, r = residual_normed
    model.eval()
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = torch.from_numpy(rng.standard_normal((1, 2, 8, 8)) * rng.uniform(0.1, 10))
        J = torch.autograd.functional.jacobian(model, x).reshape(2, -1).numpy()
        assert np.linalg.norm(J, 1) <= r.network_bound["norm_1"]
        assert np.linalg.norm(J, np.inf) <= r.network_bound["norm_inf"]


def test_concatenation_adds_in_l1_and_takes_the_larger_in_linf():
    class Cat(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(2, 2, 3, padding=1)
            self.b = nn.Conv2d(2, 3, 3, padding=1)

        def forward(self, x):
            return torch.cat([self.a(x), self.b(x)], dim=1)

    torch.manual_seed(0)
    r = convop.audit(Cat().double(), (2, 6, 6), norms=(1, np.inf))
    a, b = r.layers
    assert r.network_bound["norm_1"] == pytest.approx(a.norm_1 + b.norm_1, rel=1e-12)
    assert r.network_bound["norm_inf"] == pytest.approx(max(a.norm_inf, b.norm_inf), rel=1e-12)
    assert r.network_bound["sigma_max"] == pytest.approx(np.hypot(a.sigma_max, b.sigma_max),
                                                         rel=1e-12)


def test_the_onnx_bounds_per_norm_match_the_torch_ones(residual_normed):
    # The exporter folds the batch norm into the stem: bounds at most the torch ones, and
    # the Gemm of the head read the right way round (l1 and l-inf tell B from B^T).
    model, from_torch = residual_normed
    exported = convop.audit(_export(model.eval(), (2, 8, 8)), (2, 8, 8), rtol=1e-12,
                            norms=(1, np.inf))
    for field in ("norm_1", "norm_inf"):
        assert exported.network_bound[field] <= from_torch.network_bound[field] * (1 + 1e-12)
    rng = np.random.default_rng(1)
    for _ in range(10):
        x = torch.from_numpy(rng.standard_normal((1, 2, 8, 8)))
        J = torch.autograd.functional.jacobian(model, x).reshape(2, -1).numpy()
        assert np.linalg.norm(J, 1) <= exported.network_bound["norm_1"]
        assert np.linalg.norm(J, np.inf) <= exported.network_bound["norm_inf"]


class Functional(nn.Module):
    """Pooling, flatten and dropout as functional calls (torchvision-style forwards)."""

    def __init__(self, training_dropout=False):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Linear(4, 3)
        self.training_dropout = training_dropout

    def forward(self, x):
        F = torch.nn.functional
        x = F.max_pool2d(torch.relu(self.conv1(x)), 3, 2, 1)
        x = F.avg_pool2d(self.conv2(x), kernel_size=2, stride=2)
        x = F.dropout(x, 0.5, training=self.training or self.training_dropout)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.head(x)


def test_functional_pooling_flatten_and_dropout_have_rules():
    torch.manual_seed(2)
    model = Functional().double()
    r = convop.audit(model, (2, 8, 8), rtol=1e-12, norms=(1, np.inf))
    s1, s2 = (row.sigma_max for row in r.layers)
    linear = model.head.weight.detach().numpy()
    # max pool 3/2/1 covers a pixel 2x2 times: sqrt(4); avg pool 2/2: sqrt(1/4); adaptive
    # average of 2x2 pixels: sqrt(1/4).
    expected = s1 * 2.0 * s2 * 0.5 * 0.5 * np.linalg.norm(linear, 2)
    assert r.network_bound["sigma_max"] == pytest.approx(expected, rel=1e-12)
    rng = np.random.default_rng(3)
    model.eval()
    for _ in range(10):
        x = torch.from_numpy(rng.standard_normal((1, 2, 8, 8)))
        J = torch.autograd.functional.jacobian(model, x).reshape(3, -1).numpy()
        assert np.linalg.norm(J, 2) <= r.network_bound["sigma_max"]
        assert np.linalg.norm(J, 1) <= r.network_bound["norm_1"]
        assert np.linalg.norm(J, np.inf) <= r.network_bound["norm_inf"]
    random = convop.audit(Functional(training_dropout=True).double(), (2, 8, 8))
    assert random.network_bound is None and "training=True is random" in random.network_note


def test_an_untraceable_model_says_what_to_do():
    class Branching(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1)

        def forward(self, x):
            return self.conv(x) if x.sum() >= 0 else x

    r = convop.audit(Branching().double(), (2, 6, 6))
    assert "rows above are exact regardless" in r.network_note
    assert "traceable submodule" in r.network_note and r.layers[0].sigma_max > 0


def test_a_layer_that_does_not_converge_is_a_row_with_its_bracket(monkeypatch):
    # A genuine NoConvergence (a tiny iteration budget) on the second layer: its row
    # carries a certified interval, the audit goes on, the network bound uses the upper end.
    import convop.auditing.layer as layer_module

    real = layer_module.spectral_norm

    def short(weight, *args, **kwargs):
        if weight.shape[0] == 2:
            kwargs["maxiter"] = 3
        return real(weight, *args, **kwargs)

    monkeypatch.setattr(layer_module, "spectral_norm", short)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(8, 2, 3, padding=1)).double()
    r = convop.audit(model, (3, 12, 12), sigma_min=True, progress=False)
    first, second = r.layers
    assert first.sigma_max_bracket is None and first.sigma_max > 0
    assert np.isnan(second.sigma_max) and "not converged" in second.note
    low, high = second.sigma_max_bracket
    W = convop.torch.conv_matrix_from_module(model[2], (12, 12), domain="input")
    exact = dense_norms(W)[0]
    assert low <= exact <= high and low > 0
    assert r.network_bound["sigma_max"] == pytest.approx(first.sigma_max * high, rel=1e-12)
    assert "certified upper bound stands in" in r.network_note
    with pytest.raises(TypeError, match="`progress`"):
        convop.audit(model, (3, 12, 12), progress="yes")


def test_sigma_min_is_computed_where_its_predicted_factor_is_affordable(monkeypatch):
    # The factor's arithmetic, predicted before any numeric work, decides (not the unknowns):
    # here a limit between the two layers' factors.
    import convop.auditing.layer as layer_module
    from convop.geometry import make_geometry
    from convop.spectral.smallest import predicted_factor_flops

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(4, 8, 3, padding=1)).double()
    weights = [model[i].weight.detach().numpy() for i in (0, 2)]
    flops = [predicted_factor_flops(make_geometry(w.shape, (12, 12), padding=1), w)
             for w in weights]
    assert flops[0] < flops[1]
    monkeypatch.setattr(layer_module, "SMALLEST_LIMIT", 0)
    monkeypatch.setattr(layer_module, "SIGMA_MIN_FLOPS", (flops[0] + flops[1]) / 2)
    first, second = convop.audit(model, (3, 12, 12), sigma_min=True, progress=False).layers
    A = convop.torch.conv_matrix_from_module(model[0], (12, 12), domain="input")
    assert first.sigma_min == pytest.approx(dense_norms(A)[1], rel=1e-9)
    assert second.sigma_min is None and second.condition_number is None
    assert f"{flops[1]:.1e} multiply-adds" in second.note and "which=\"smallest\"" in second.note
