"""What an adapter between convop and another framework needs: padding pairs and layouts.

- :func:`padding_pairs`: every padding form convop accepts, as one
  ``(before, after)`` pair per spatial axis (frameworks want explicit pairs).
- :func:`same_padding_pairs`: the pairs TensorFlow's and JAX's ``"SAME"`` and
  ONNX's ``SAME_UPPER``/``SAME_LOWER`` choose, which depend on the input size
  and the stride.
- :func:`relayout`: an array from one axis layout to another, named by letters
  (``"NCHW"`` -> ``"NHWC"`` for activations, ``"OIHW"`` -> ``"HWIO"`` for
  weights, ``"IOHW"`` for PyTorch's transposed weights, ...).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._dtypes import as_numeric_array
from ._typing import IntOrTuple, PaddingLike
from ._validation import as_int_tuple, as_padding, check_choice, is_int

__all__ = ["padding_pairs", "relayout", "same_padding_pairs"]


def padding_pairs(padding: PaddingLike, kernel_size: IntOrTuple, *, stride: IntOrTuple = 1,
                  dilation: IntOrTuple = 1) -> tuple[tuple[int, int], ...]:
    """Return ``padding`` as one ``(before, after)`` pair per spatial axis.

    Parameters
    ----------
    padding : int, tuple, tuple of pairs, "valid" or "same"
        Any form :func:`convop.conv_matrix` accepts; ``"same"`` is PyTorch's
        split (``before = total // 2``, the rest after; stride 1 only).
    kernel_size : int or tuple of int
        Its length is the number of spatial axes (an int means one axis).
    stride, dilation : int or tuple of int
        Needed by ``"same"`` (the total is ``dilation * (kernel - 1)``).

    Returns
    -------
    tuple of (int, int)

    Examples
    --------
    >>> from convop import padding_pairs
    >>> padding_pairs(1, (3, 3)), padding_pairs("same", (4, 3)), padding_pairs(((0, 1), 2), (3, 3))
    (((1, 1), (1, 1)), ((1, 2), (1, 1)), ((0, 1), (2, 2)))
    """
    if is_int(kernel_size):
        ndim = 1
    elif isinstance(kernel_size, (tuple, list, np.ndarray)) and np.ndim(kernel_size) == 1:
        ndim = len(kernel_size)
    else:
        raise TypeError(f"`kernel_size` must be a positive int or a tuple of 1 to 3 of them; "
                        f"got {type(kernel_size).__name__}.")
    if not 1 <= ndim <= 3:
        raise ValueError(f"`kernel_size` must have 1 to 3 spatial axes; got {ndim}.")
    kernel = as_int_tuple(kernel_size, "kernel_size", ndim, minimum=1)
    return as_padding(padding, ndim, kernel_size=kernel,
                      dilation=as_int_tuple(dilation, "dilation", ndim, minimum=1),
                      stride=as_int_tuple(stride, "stride", ndim, minimum=1))


def same_padding_pairs(input_size: IntOrTuple, kernel_size: IntOrTuple, *,
                       stride: IntOrTuple = 1, dilation: IntOrTuple = 1,
                       odd: str = "after") -> tuple[tuple[int, int], ...]:
    """Return the padding of TensorFlow's/JAX's ``"SAME"`` (ONNX ``SAME_UPPER``/``SAME_LOWER``).

    Each axis gets ``ceil(n / stride)`` outputs: the total padding is
    ``max((ceil(n / s) - 1) s + d (k - 1) + 1 - n, 0)``, split in half with the
    odd pixel after (``odd="after"``: TensorFlow, JAX, ONNX ``SAME_UPPER``) or
    before (``odd="before"``: ONNX ``SAME_LOWER``). With a stride this is not
    PyTorch's symmetric ``k // 2``, and not convop's ``"same"`` (stride 1 only).

    Parameters
    ----------
    input_size, kernel_size : int or tuple of int
        One entry per spatial axis (an int: one axis, or broadcast to the other's length).
    stride, dilation : int or tuple of int
    odd : {"after", "before"}
        Where an odd total's extra pixel goes.

    Returns
    -------
    tuple of (int, int)

    Examples
    --------
    >>> from convop import same_padding_pairs
    >>> same_padding_pairs((8, 7), 3, stride=2)
    ((0, 1), (1, 1))
    >>> same_padding_pairs(8, 4, odd="before")
    ((2, 1),)
    """
    check_choice(odd, "odd", ("after", "before"))
    lengths = {name: len(v) for name, v in (("input_size", input_size),
                                             ("kernel_size", kernel_size))
               if isinstance(v, (tuple, list, np.ndarray)) and np.ndim(v) == 1}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"`input_size` and `kernel_size` must have the same number of spatial "
                         f"axes; got {input_size!r} and {kernel_size!r}.")
    ndim = max(lengths.values(), default=1)
    if ndim > 3:
        raise ValueError(f"`{next(iter(lengths))}` must have 1 to 3 spatial axes; got {ndim}.")
    size = as_int_tuple(input_size, "input_size", ndim, minimum=1)
    kernel = as_int_tuple(kernel_size, "kernel_size", ndim, minimum=1)
    strides = as_int_tuple(stride, "stride", ndim, minimum=1)
    dilations = as_int_tuple(dilation, "dilation", ndim, minimum=1)
    pairs = []
    for n, k, s, d in zip(size, kernel, strides, dilations):
        total = max((-(-n // s) - 1) * s + d * (k - 1) + 1 - n, 0)
        small = total // 2
        pairs.append((small, total - small) if odd == "after" else (total - small, small))
    return tuple(pairs)


def relayout(array: Any, source: str, target: str) -> np.ndarray:
    """Return ``array`` with its axes moved from layout ``source`` to layout ``target``.

    Layouts name every axis by one letter, each once, the same letters on both
    sides: ``relayout(x, "NCHW", "NHWC")`` (channels last, as TensorFlow),
    ``relayout(w, "OIHW", "HWIO")`` (a convop/PyTorch weight for TensorFlow or
    JAX), ``relayout(w, "IOHW", "OIHW")`` (PyTorch's transposed-convolution
    weight). The result is a view where numpy allows it.

    Examples
    --------
    >>> import numpy as np
    >>> from convop import relayout
    >>> relayout(np.zeros((2, 3, 5, 7)), "NCHW", "NHWC").shape
    (2, 5, 7, 3)
    >>> relayout(np.zeros((8, 4, 3, 1)), "OIHW", "HWIO").shape
    (3, 1, 4, 8)
    """
    arr = as_numeric_array(array, "array")
    for name, layout in (("source", source), ("target", target)):
        if not isinstance(layout, str):
            raise TypeError(f"`{name}` must be a string of axis letters such as 'NCHW'; got "
                            f"{type(layout).__name__}.")
        if len(set(layout)) != len(layout):
            raise ValueError(f"`{name}` must name each axis once; got {layout!r}.")
    if len(source) != arr.ndim:
        raise ValueError(f"`source` {source!r} names {len(source)} axes but `array` has "
                         f"{arr.ndim}.")
    if sorted(source) != sorted(target):
        raise ValueError(f"`target` {target!r} must use the letters of `source` {source!r}.")
    return np.transpose(arr, [source.index(letter) for letter in target])
