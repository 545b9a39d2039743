"""Layers like the ones users analyze: ill-conditioned and trained 3x3 convolutions.

Shared by the spectral tests and ``benchmarks/bench_real_layers.py`` (which puts
this directory on its path).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def mixed(channels: int, cond: float, seed: int = 0) -> np.ndarray:
    """Kaiming 3x3 weights whose output channels are mixed by a matrix of condition ``cond``."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((channels, channels, 3, 3)) * math.sqrt(2 / (9 * channels))
    u, _ = np.linalg.qr(rng.standard_normal((channels, channels)))
    v, _ = np.linalg.qr(rng.standard_normal((channels, channels)))
    mixing = u @ np.diag(np.logspace(0, -math.log10(cond), channels)) @ v.T
    return np.einsum("om,mikl->oikl", mixing, w)


def trained_digits(torch: Any, channels: int, size: int = 8, epochs: int = 30,
                   batch: int = 128, seed: int = 0) -> tuple[np.ndarray, float]:
    """The second 3x3 convolution of a small CNN fitted on scikit-learn's digits.

    The 8x8 images are upsampled to ``size`` (a multiple of 8) by repetition.
    Returns the float64 weights and the training accuracy.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    repeat = size // 8
    images = np.kron(digits.images / 16.0, np.ones((repeat, repeat)))
    x = torch.tensor(images, dtype=torch.float32)[:, None]
    y = torch.tensor(digits.target)
    torch.manual_seed(seed)
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(4 * channels, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        for rows in torch.split(torch.randperm(len(y)), batch):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[rows]), y[rows]).backward()
            optimizer.step()
    with torch.no_grad():
        accuracy = float((model(x).argmax(1) == y).float().mean())
    return model[2].weight.detach().double().numpy(), accuracy
