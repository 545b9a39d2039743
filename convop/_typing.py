"""Type aliases and the option sets accepted by the public API."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from .modes import MODES

Order = Literal["F", "C"]
Domain = Literal["padded", "input"]
PaddingMode = Literal["zeros", "reflect", "replicate", "circular"]

#: An int for every axis, or one int per spatial axis.
IntOrTuple = int | Sequence[int]
#: An int, one int per axis, one ``(before, after)`` pair per axis,
#: ``"valid"`` or ``"same"``.
PaddingLike = int | str | Sequence[int | Sequence[int]]

ORDERS: tuple[str, ...] = ("F", "C")
DOMAINS: tuple[str, ...] = ("padded", "input")
PADDING_MODES: tuple[str, ...] = tuple(MODES)
