"""W larger than memory: row blocks of whole output channels written to disk, read back by range.

:func:`save_row_blocks` builds the blocks of :meth:`ConvGeometry.row_partition`
one at a time (peak memory: one block) and writes each with
``scipy.sparse.save_npz`` next to a JSON manifest; under MPI each rank can write
its own blocks (``only=``). :func:`load_row_blocks` reassembles any range of
rows, reading only the files it overlaps.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from . import _sparse
from ._dtypes import as_weight
from ._typing import Domain, IntOrTuple, Order, PaddingLike, PaddingMode
from ._validation import as_int, check_domain, check_order
from .geometry import layer_arguments, make_geometry
from .matrix import conv_matrix, row_range

__all__ = ["load_row_blocks", "save_row_blocks"]

MANIFEST = "blocks.json"


def _block_name(index: int) -> str:
    return f"block-{index:05d}.npz"


def save_row_blocks(
    weight: npt.ArrayLike,
    input_size: IntOrTuple,
    directory: str | os.PathLike[str],
    parts: int,
    *,
    stride: IntOrTuple = 1,
    padding: PaddingLike = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: PaddingMode = "zeros",
    domain: Domain = "padded",
    order: Order = "F",
    dtype: npt.DTypeLike | None = None,
    max_bytes: int | None = None,
    only: Iterable[int] | None = None,
) -> list[str]:
    """Write ``W`` as ``parts`` row blocks of whole output channels into ``directory``.

    Parameters
    ----------
    weight, input_size, stride, padding, dilation, groups, padding_mode, domain, order, dtype
        As in :func:`convop.conv_matrix`.
    directory : path
        Created if missing; gets ``blocks.json`` and ``block-00000.npz``, ...
    parts : int
        Number of blocks (at most the number of output channels).
    max_bytes : int, optional
        Memory budget of one block.
    only : iterable of int, optional
        Write only these blocks (one rank's share in a distributed run); the
        manifest is written every time, identical.

    Returns
    -------
    list of str
        The block files written.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from convop.blocks import save_row_blocks, load_row_blocks
    >>> w = np.ones((4, 2, 3, 3))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = save_row_blocks(w, (6, 6), d, 2, padding=1)
    ...     load_row_blocks(d, rows=slice(30, 40)).shape
    (10, 128)
    """
    w = as_weight(weight)
    layer = layer_arguments(stride, padding, dilation, groups, padding_mode)
    geom = make_geometry(w.shape, input_size, **layer)
    check_domain(domain)
    check_order(order)
    count = as_int(parts, "parts", minimum=1)
    blocks = geom.row_partition(count, domain)
    chosen = range(count) if only is None else sorted({as_int(i, "only", minimum=0)
                                                       for i in only})
    if any(i >= count for i in chosen):
        raise ValueError(f"`only` must index the {count} blocks; got {list(chosen)}.")
    os.makedirs(directory, exist_ok=True)
    shape = geom.matrix_shape(domain)
    manifest = {
        "shape": list(shape), "domain": domain, "order": order, "layer": geom.describe(),
        "blocks": [{"file": _block_name(i), "rows": [b.rows.start, b.rows.stop],
                    "nnz": b.nnz} for i, b in enumerate(blocks)],
    }
    with open(os.path.join(directory, MANIFEST), "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=1)
    written = []
    for i in chosen:
        W = conv_matrix(w, geom.input_size, domain=domain, order=order, dtype=dtype,
                        max_bytes=max_bytes, rows=blocks[i].rows, **layer)
        path = os.path.join(directory, _block_name(i))
        sp.save_npz(path, W, compressed=False)
        written.append(path)
        del W
    return written


def load_row_blocks(directory: str | os.PathLike[str], rows: slice | None = None
                    ) -> sp.csr_array:
    """Read rows ``rows`` (a slice, default all) of a matrix saved by :func:`save_row_blocks`.

    Only the block files the range overlaps are read; the result is exactly
    ``conv_matrix(...)[rows]`` (canonical CSR, int32 indices when they fit).
    """
    path = os.path.join(directory, MANIFEST)
    try:
        with open(path, encoding="utf-8") as fh:
            manifest = json.load(fh)
    except FileNotFoundError:
        raise FileNotFoundError(f"`directory` {str(directory)!r} holds no {MANIFEST}: not "
                                f"written by save_row_blocks") from None
    m, n = manifest["shape"]
    r0, r1 = (0, m) if rows is None else row_range(rows, m)
    data, indices, indptr = [], [], [np.zeros(1, dtype=np.int64)]
    done = 0
    for block in manifest["blocks"]:
        b0, b1 = block["rows"]
        lo, hi = max(r0, b0), min(r1, b1)
        if lo >= hi:
            continue
        W = sp.csr_array(sp.load_npz(os.path.join(directory, block["file"])))
        if W.shape != (b1 - b0, n):
            raise ValueError(f"`directory` {str(directory)!r}: {block['file']} has shape "
                             f"{W.shape}, the manifest says {(b1 - b0, n)}.")
        start, stop = int(W.indptr[lo - b0]), int(W.indptr[hi - b0])
        data.append(W.data[start:stop])
        indices.append(W.indices[start:stop])
        indptr.append(W.indptr[lo - b0 + 1:hi - b0 + 1].astype(np.int64) - start + done)
        done += stop - start
    idx = _sparse.index_dtype(max(done, r1 - r0, n))
    return _sparse.csr_from_parts(
        np.concatenate(data) if data else np.zeros(0),
        np.concatenate(indices).astype(idx) if indices else np.zeros(0, dtype=idx),
        np.concatenate(indptr).astype(idx), (r1 - r0, n))
