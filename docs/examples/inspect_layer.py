"""Inspect a layer as a matrix: sizes before building, one row, the block structure."""

import numpy as np

import convop

rng = np.random.default_rng(0)
weight = rng.standard_normal((4, 2, 3, 3))
geom = convop.conv_geometry(weight.shape, (6, 6), stride=1, padding=1)
print(geom.describe())
print("padded-domain W:", geom.matrix_shape("padded"), "nnz", geom.nnz("padded"),
      "bytes", geom.matrix_nbytes("padded"))

W = convop.conv_matrix(weight, (6, 6), padding=1)
row = W[[0]]  # output channel 0, output pixel (0, 0)
print("row 0 reads columns", row.indices.tolist())
assert row.nnz == 2 * 3 * 3  # one entry per tap, zero-padding taps included

try:
    import matplotlib

    matplotlib.use("Agg")
    import tempfile
    from pathlib import Path

    ax = convop.plot_structure(W, channels=(4, 2))
    path = Path(tempfile.mkdtemp()) / "structure.png"
    ax.figure.savefig(path)
    print("structure picture:", path)
except ImportError:
    print('pictures need: python -m pip install "convop[plot]"')
