"""Check other convolution implementations against the exact operator, and say where they fail.

- :func:`dot_test`: the adjoint identity ``<A x, y> = <x, A^T y>`` for any pair
  of callables, with a tolerance from the magnitudes and the dtype.
- :func:`check_conv`: a battery of layers (every edge case convop knows) run
  through an implementation of the forward pass, input gradient, weight
  gradient or transposed convolution, compared with the exact result. A
  failing configuration is localized (channels; border or interior positions)
  and matched against known causes (flipped kernel, transposed or permuted
  channels, off-by-one padding, wrong ``output_padding``, missing bias).

One job per module: :mod:`.adjoint` (the dot test), :mod:`.battery` (the layers),
:mod:`.check` (running a battery), :mod:`.case` (one configuration's inputs and
exact result), :mod:`.compare` (tolerances), :mod:`.diagnose` (where and why it
fails), :mod:`.report` (the results).
"""

from .adjoint import DotTestReport, dot_test
from .battery import KINDS, RTOL, LayerConfig, standard_configs
from .check import check_conv
from .report import CheckReport, ConfigResult

__all__ = [
    "KINDS",
    "RTOL",
    "CheckReport",
    "ConfigResult",
    "DotTestReport",
    "LayerConfig",
    "check_conv",
    "dot_test",
    "standard_configs",
]
