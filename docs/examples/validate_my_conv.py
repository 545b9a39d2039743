"""Validate a hand-written convolution (direct loops) with the exact operator."""

import numpy as np

import convop


def loop_conv(x, weight, bias=None, *, stride=1, padding=0, dilation=1, groups=1,
              padding_mode="zeros"):
    """Compute a 2-D convolution with direct loops; only what this example needs."""
    if x.ndim != 4 or groups != 1 or padding_mode != "zeros" or dilation != 1:
        raise NotImplementedError("2-D, groups=1, zero padding, dilation 1 only")
    if not isinstance(padding, int) or not isinstance(stride, int):
        raise NotImplementedError("int padding and stride only")
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    n, _, h, w = xp.shape
    c_out, _, kh, kw = weight.shape
    out = np.zeros((n, c_out, (h - kh) // stride + 1, (w - kw) // stride + 1), dtype=x.dtype)
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            patch = xp[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
            out[:, :, i, j] = np.einsum("nchw,mchw->nm", patch, weight)
    return out if bias is None else out + bias.reshape(1, -1, 1, 1)


report = convop.check_conv(loop_conv, configs="quick", rng=0)
print(report)
# What loop_conv cannot express raises NotImplementedError: skipped, with the reason.
assert report.passed and report.skips
print("skipped:", ", ".join(r.config.name for r in report.skips))
