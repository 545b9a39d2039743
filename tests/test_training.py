"""convop.torch: exact spectral normalization, the certificate, circular clipping."""

from __future__ import annotations

import io
from typing import NamedTuple

import numpy as np
import pytest

import convop

torch = pytest.importorskip("torch")
import convop.torch  # noqa: E402 - after the skip: the bridge module needs torch

nn = torch.nn


class Case(NamedTuple):
    name: str
    make: object  # () -> module
    size: tuple[int, ...]


CASES = [
    Case("strided", lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1), (9, 8)),
    Case("dilated", lambda: nn.Conv2d(2, 3, 3, padding=2, dilation=2), (7, 7)),
    Case("grouped", lambda: nn.Conv2d(4, 6, 3, padding=1, groups=2), (6, 5)),
    Case("circular", lambda: nn.Conv2d(2, 2, 3, padding=1, padding_mode="circular"), (6, 6)),
    Case("reflect", lambda: nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect"), (6, 7)),
    Case("replicate same", lambda: nn.Conv2d(2, 2, 4, padding="same",
                                             padding_mode="replicate"), (5, 6)),
    Case("transposed", lambda: nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1,
                                                  output_padding=1), (4, 5)),
    Case("transposed trimmed", lambda: nn.ConvTranspose1d(2, 3, 3, dilation=2,
                                                          output_padding=1), (6,)),
    Case("1-D", lambda: nn.Conv1d(2, 3, 5, stride=2, padding=2), (11,)),
    Case("3-D", lambda: nn.Conv3d(2, 2, 3, padding=1, padding_mode="circular"), (4, 4, 3)),
    Case("transposed 3-D", lambda: nn.ConvTranspose3d(2, 2, 2, stride=2), (2, 3, 2)),
]


def exact_norm(module, size) -> float:
    """The layer's exact norm from its own matrix (convop's, dense SVD at these sizes)."""
    W = convop.torch.conv_matrix_from_module(module, size, domain="input") if not isinstance(
        module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)) else (
        convop.torch.conv_matrix_from_module(module, size))
    return float(np.linalg.norm(W.toarray(), 2))


def train_steps(module, size, steps=5, seed=0):
    """A few SGD steps on a random regression target: the weight moves, u and v follow."""
    gen = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.05)
    channels = module.in_channels
    for _ in range(steps):
        x = torch.randn((2, channels, *size), generator=gen, dtype=torch.float64)
        loss = (module(x) - 1.0).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_the_normalized_layer_has_norm_one(case):
    torch.manual_seed(0)
    module = convop.torch.spectral_norm(case.make().double(), case.size)
    assert exact_norm(module, case.size) == pytest.approx(1.0, abs=1e-7)  # exact start (rtol 1e-8)
    module.train()
    train_steps(module, case.size)
    # After training, power iterations on the final weight (training-mode passes
    # without an optimizer step) bring u, v to it.
    parametrization = module.parametrizations.weight[0]
    parametrization.n_power_iterations = 2000
    with torch.no_grad():
        module(torch.zeros((1, module.in_channels, *case.size), dtype=torch.float64))
    assert exact_norm(module, case.size) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("case", [c for c in CASES if c.name in (
    "strided", "dilated", "reflect", "transposed", "1-D")], ids=lambda c: c.name)
def test_torchs_spectral_norm_is_not_the_layers(case):
    # torch normalizes weight.reshape(C_out, -1) (for a transposed layer, dim 1): a
    # different matrix, so the layer's norm is not 1.
    torch.manual_seed(0)
    module = case.make().double()
    dim = 1 if "transposed" in case.name else 0
    nn.utils.parametrizations.spectral_norm(module, n_power_iterations=200, dim=dim)
    assert abs(exact_norm(module, case.size) - 1.0) > 1e-2


def test_gradients_match_finite_differences():
    # In eval mode u and v are fixed: W -> W / <u, A_W v> is a smooth map whose autograd
    # gradient must match central differences (float64).
    torch.manual_seed(0)
    module = convop.torch.spectral_norm(nn.Conv2d(2, 3, 3, stride=2, padding=1,
                                                  padding_mode="reflect").double(), (6, 5))
    module.eval()
    parametrization = module.parametrizations.weight[0]
    original = module.parametrizations.weight.original.detach().clone().requires_grad_(True)
    x = torch.randn((1, 2, 6, 5), dtype=torch.float64)

    def loss(weight):
        w = parametrization(weight)
        return torch.nn.functional.conv2d(
            torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect"), w, stride=2).square().sum()

    assert torch.autograd.gradcheck(loss, (original,), eps=1e-6, atol=1e-8, rtol=1e-6)


def test_sigma_is_linear_in_the_weight_with_gradient_u_v():
    # d<u, A_W v>/dW is u v^T written onto the taps: the weight gradient of the layer at
    # input v with output gradient u (convop's exact weight gradient).
    torch.manual_seed(1)
    module = convop.torch.spectral_norm(nn.Conv2d(2, 3, 3, padding=1).double(), (5, 5))
    p = module.parametrizations.weight[0]
    weight = module.parametrizations.weight.original.detach().clone().requires_grad_(True)
    p.sigma(weight).backward()
    expected = convop.conv_weight_grad(p._v.numpy(), p._u.numpy(), (3, 3), padding=1)
    np.testing.assert_allclose(weight.grad.numpy(), expected, rtol=1e-12, atol=1e-15)


def test_state_dict_round_trips_and_eval_is_frozen():
    torch.manual_seed(0)
    size = (6, 6)
    module = convop.torch.spectral_norm(nn.Conv2d(2, 2, 3, padding=1).double(), size)
    train_steps(module, size, steps=3)
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    assert any(k.endswith("_u") for k in module.state_dict())
    torch.manual_seed(5)
    other = convop.torch.spectral_norm(nn.Conv2d(2, 2, 3, padding=1).double(), size)
    buffer.seek(0)
    other.load_state_dict(torch.load(buffer))
    module.eval()
    other.eval()
    assert torch.equal(module.weight, other.weight)
    u = module.parametrizations.weight[0]._u.clone()
    for _ in range(3):
        module(torch.randn((1, 2, *size), dtype=torch.float64))
    assert torch.equal(u, module.parametrizations.weight[0]._u)  # eval: no power iteration


def test_dtype_and_device_follow_the_module():
    torch.manual_seed(0)
    module = convop.torch.spectral_norm(nn.Conv2d(2, 2, 3, padding=1), (6, 6))
    assert module.parametrizations.weight[0]._u.dtype == torch.float32
    y = module(torch.randn((1, 2, 6, 6)))
    assert y.dtype == torch.float32
    module.double()
    assert module.parametrizations.weight[0]._v.dtype == torch.float64
    assert module(torch.randn((1, 2, 6, 6), dtype=torch.float64)).dtype == torch.float64


def test_bad_arguments_name_the_parameter():
    with pytest.raises(TypeError, match="`module`"):
        convop.torch.spectral_norm(nn.Linear(3, 3), (4,))
    with pytest.raises(ValueError, match="`input_size`"):
        convop.torch.spectral_norm(nn.Conv2d(1, 1, 3), (4,))
    with pytest.raises(ValueError, match="`n_power_iterations`"):
        convop.torch.spectral_norm(nn.Conv2d(1, 1, 3), (4, 4), n_power_iterations=0)
    with pytest.raises(ValueError, match="`eps`"):
        convop.torch.spectral_norm(nn.Conv2d(1, 1, 3), (4, 4), eps=-1.0)
    with pytest.raises(ValueError, match="reflect"):  # PyTorch's limit, checked by convop
        convop.torch.spectral_norm(nn.Conv2d(1, 1, 3, padding=3, padding_mode="reflect"),
                                   (3, 3))


# The certificate ----------------------------------------------------------------------------


def test_the_certificate_finds_torchs_gap_and_none_in_convops():
    torch.manual_seed(0)
    ours = convop.torch.spectral_norm(nn.Conv2d(1, 4, 3, stride=2, padding=1).double(), (8, 8))
    theirs = nn.utils.parametrizations.spectral_norm(nn.Conv2d(4, 4, 3, padding=1).double(),
                                                     n_power_iterations=200)
    plain = nn.Conv2d(4, 2, 3).double()
    model = nn.Sequential(ours, nn.ReLU(), theirs, nn.ReLU(), plain)
    cert = convop.torch.certify(model, (1, 8, 8), rtol=1e-10)
    first, second, third = cert.layers
    assert first.normalization == "convop.torch.spectral_norm"
    assert abs(first.gap) < 1e-8
    assert second.normalization == "torch.nn.utils.parametrizations.spectral_norm"
    assert second.exact == pytest.approx(exact_norm(theirs, (4, 4)), rel=1e-8)
    assert second.gap == pytest.approx(second.exact - 1.0) and abs(second.gap) > 0.01
    assert third.normalization is None and third.gap is None
    assert cert.largest_gap == second.gap
    assert cert.lipschitz == pytest.approx(first.exact * second.exact * third.exact, rel=1e-9)
    assert "largest gap" in str(cert)


# Circular clipping ----------------------------------------------------------------------------


def test_a_full_support_kernel_is_clipped_exactly():
    # Kernel as large as the input: the clipped operator's kernel fits in the taps, so every
    # singular value is min(s, max_value), the others untouched.
    torch.manual_seed(0)
    layer = nn.Conv1d(3, 3, 5, padding=2, padding_mode="circular").double()
    w = layer.weight.detach().numpy().copy()
    before = np.sort(convop.circular_singular_values(w, 5))
    limit = float(np.median(before))
    top = convop.torch.clip_singular_values_(layer, 5, limit)
    after = np.sort(convop.circular_singular_values(layer.weight.detach().numpy(), 5))
    np.testing.assert_allclose(after, np.minimum(before, limit), rtol=1e-12, atol=1e-12)
    assert top == pytest.approx(limit, rel=1e-12)


@pytest.mark.parametrize("make, size", [
    (lambda: nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular"), (6, 6)),
    (lambda: nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=2, padding_mode="circular"),
     (7, 8)),
    (lambda: nn.Conv3d(2, 2, 3, padding=1, padding_mode="circular"), (4, 4, 4)),
])
def test_a_small_kernel_ends_within_the_limit(make, size):
    torch.manual_seed(0)
    layer = make().double()
    w = layer.weight.detach().numpy()
    kw = dict(padding=layer.padding, dilation=layer.dilation, groups=layer.groups)
    limit = 0.7 * float(convop.circular_singular_values(w, size, **kw)[0])
    top = convop.torch.clip_singular_values_(layer, size, limit, iterations=3)
    exact = convop.spectral_norm(layer.weight.detach().numpy(), size, padding_mode="circular",
                                 **kw)
    assert top == pytest.approx(exact, rel=1e-9) and exact <= limit * (1 + 1e-12)


def test_clipping_refuses_layers_that_are_not_circulant():
    with pytest.raises(ValueError, match="block Toeplitz, not block circulant"):
        convop.torch.clip_singular_values_(nn.Conv2d(2, 2, 3, padding=1), (6, 6), 1.0)
    with pytest.raises(ValueError, match="stride 1"):
        convop.torch.clip_singular_values_(
            nn.Conv2d(2, 2, 3, stride=2, padding=1, padding_mode="circular"), (6, 6), 1.0)
    with pytest.raises(ValueError, match="wraps around"):
        convop.torch.clip_singular_values_(
            nn.Conv1d(1, 1, 3, padding=2, dilation=2, padding_mode="circular"), (4,), 1.0)
    with pytest.raises(ValueError, match="`max_value`"):
        convop.torch.clip_singular_values_(
            nn.Conv1d(1, 1, 3, padding=1, padding_mode="circular"), (4,), 0.0)
    with pytest.raises(TypeError, match="transposed"):
        convop.torch.clip_singular_values_(nn.ConvTranspose1d(1, 1, 3), (4,), 1.0)
