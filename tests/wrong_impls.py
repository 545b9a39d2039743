"""Deliberately wrong convolutions, importable as MODULE:FUNCTION by the CLI tests."""

import numpy as np

import convop


def flipped_conv(x, weight, bias=None, **kw):
    return convop.conv(x, np.flip(weight, axis=tuple(range(2, weight.ndim))), bias, **kw)


not_callable = 3
