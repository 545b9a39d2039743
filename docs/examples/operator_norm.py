"""The spectral norm of the layer is not the norm of the reshaped kernel."""

import numpy as np

import convop

rng = np.random.default_rng(1)
weight = rng.standard_normal((8, 8, 3, 3))
kernel_norm = np.linalg.norm(weight.reshape(8, -1), 2)
print(f"reshaped-kernel norm (what frameworks report): {kernel_norm:.4f}")
for size in (4, 8, 16):
    for mode in ("zeros", "circular"):
        sigma = convop.spectral_norm(weight, (size, size), padding=1, padding_mode=mode, rng=0)
        print(f"input {size:>2}x{size:<2} {mode:8} padding: operator norm {sigma:.4f}")

# Circular padding: the whole spectrum through the FFT agrees with the exact matrix.
values = convop.circular_singular_values(weight, (8, 8))
assert abs(values[0] - convop.spectral_norm(weight, (8, 8), padding=1,
                                             padding_mode="circular", rng=0)) < 1e-9 * values[0]
print(f"circular 8x8: {values.size} singular values, condition {values[0] / values[-1]:.2f}")
