"""What an audit found, layer by layer and for the whole model."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from dataclasses import dataclass
from typing import Any

__all__ = ["AuditReport", "LayerAudit"]

#: The estimators reported beside the exact value, in report order.
ESTIMATORS = ("reshaped_kernel", "circular", "gram_bound")


@dataclass(frozen=True)
class LayerAudit:
    """One convolution of a model.

    ``sigma_max`` is exact (to ``rtol``); ``reshaped_kernel`` is the spectral
    norm of ``weight.reshape(C_out, -1)`` (what
    ``torch.nn.utils.parametrizations.spectral_norm`` computes), ``circular`` the
    norm of the layer's circular counterpart (FFT), ``gram_bound`` a certified
    upper bound (Gram iteration). ``sigma_min``/``condition_number`` are None
    when not asked for or skipped (``note`` says why). ``norm_1`` and
    ``norm_inf``, the exact l1 and l-infinity operator norms
    (:func:`convop.operator_norm`), are None unless asked for. A layer whose
    ``sigma_max`` did not converge has NaN there and ``sigma_max_bracket``, a
    certified interval holding it (its ``note`` says so). ``density`` is the
    layer's :class:`convop.SpectralDensity` when the audit was asked for it.
    """

    name: str
    kind: str
    weight_shape: tuple[int, ...]
    input_size: tuple[int, ...]
    layer: dict[str, Any]
    matrix_shape: tuple[int, int]
    nnz: int
    sigma_max: float
    reshaped_kernel: float
    circular: float
    gram_bound: float
    seconds: float
    sigma_min: float | None = None
    condition_number: float | None = None
    calls: int = 1
    note: str = ""
    norm_1: float | None = None
    norm_inf: float | None = None
    #: A certified interval holding sigma_max when it did not converge (sigma_max is NaN).
    sigma_max_bracket: tuple[float, float] | None = None
    #: The distribution of every singular value (a SpectralDensity) when asked for.
    density: Any = None

    def ratio(self, estimator: str) -> float:
        """Return an estimator over the exact value."""
        value = getattr(self, estimator)
        return value / self.sigma_max if self.sigma_max > 0 else math.nan


@dataclass(frozen=True)
class AuditReport:
    """Result of :func:`convop.audit`: one row per distinct convolution (and input size)."""

    model: str
    input_shape: tuple[int, ...]
    layers: tuple[LayerAudit, ...]
    seconds: float
    #: Lipschitz bound of the whole network per field (``sigma_max`` and each
    #: estimator in its place), valid across residual connections; None when
    #: unknown (``network_note`` says why).
    network_bound: dict[str, float] | None = None
    network_note: str = ""

    def product(self, field: str = "sigma_max") -> float:
        """Return the product of a field over the layers (each call counted).

        For a purely sequential network of these layers and 1-Lipschitz
        activations it bounds the network's Lipschitz constant; with residual
        connections ``x + f(x)`` it does not (each block contributes
        ``1 + ||f||`` instead).
        """
        return math.prod(getattr(r, field) ** r.calls for r in self.layers)

    def to_dict(self) -> dict[str, Any]:
        """Return plain Python data (no numpy), ready for JSON."""
        rows = []
        for r in self.layers:
            row = dataclasses.asdict(dataclasses.replace(r, density=None))
            row["density"] = None if r.density is None else r.density.to_dict()
            row["weight_shape"], row["input_size"] = list(r.weight_shape), list(r.input_size)
            row["matrix_shape"] = list(r.matrix_shape)
            row["layer"] = {k: _plain(v) for k, v in r.layer.items()}
            row["ratios"] = {e: r.ratio(e) for e in ESTIMATORS}
            rows.append(row)
        products = {field: self.product(field) for field in ("sigma_max", *ESTIMATORS)}
        return {"model": self.model, "input_shape": list(self.input_shape),
                "seconds": self.seconds, "layers": rows, "products": products,
                "products_note": "products bound the Lipschitz constant of a purely "
                                 "sequential network only (not across residual connections)",
                "network_bound": self.network_bound, "network_note": self.network_note}

    def to_json(self, **kwargs: Any) -> str:
        """Return the report as JSON."""
        return json.dumps(self.to_dict(), **kwargs)

    def to_csv(self) -> str:
        """Return one CSV row per layer."""
        out = io.StringIO()
        fields = ["name", "kind", "weight_shape", "input_size", "matrix_shape", "nnz",
                  "sigma_max", *ESTIMATORS, *(f"{e}_ratio" for e in ESTIMATORS),
                  "sigma_min", "condition_number", "norm_1", "norm_inf", "calls", "seconds",
                  "note"]
        writer = csv.DictWriter(out, fieldnames=fields)
        writer.writeheader()
        for r in self.layers:
            row = {f: getattr(r, f, None) for f in fields if hasattr(r, f)}
            row.update({f"{e}_ratio": r.ratio(e) for e in ESTIMATORS})
            row["weight_shape"] = "x".join(map(str, r.weight_shape))
            row["input_size"] = "x".join(map(str, r.input_size))
            row["matrix_shape"] = "x".join(map(str, r.matrix_shape))
            writer.writerow(row)
        return out.getvalue()

    def plot(self, ax: Any = None) -> Any:
        """Draw per-layer bars: the exact norm and each estimator (log scale).

        Needs matplotlib (``pip install "convop[plot]"``); returns the ``Axes``.
        """
        import numpy as np

        from ..plotting._backend import axes

        plt_ax = axes(ax, (max(6.0, 0.5 * len(self.layers) + 3), 5.5))
        fields = (("sigma_max", "exact sigma_max", "tab:red"),
                  ("reshaped_kernel", "reshaped kernel (torch spectral_norm)", "0.55"),
                  ("circular", "circular counterpart (FFT)", "tab:blue"),
                  ("gram_bound", "Gram-iteration bound", "tab:green"))
        x = np.arange(len(self.layers))
        width = 0.8 / len(fields)
        for i, (field, label, color) in enumerate(fields):
            values = [getattr(r, field) for r in self.layers]
            plt_ax.bar(x + (i - 1.5) * width, values, width, label=label, color=color)
        plt_ax.set_yscale("log")
        plt_ax.set_xticks(x)
        plt_ax.set_xticklabels([r.name for r in self.layers], rotation=60, ha="right",
                               fontsize="small")
        plt_ax.set_ylabel("spectral norm")
        # Plain numbers on the log axis (not 3 x 10^0), and the legend between the title
        # and the axes: over the bars it hides them, below it meets the rotated names.
        from matplotlib.ticker import FormatStrFormatter, NullFormatter

        plt_ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        low, high = plt_ax.get_ylim()
        # Minor labels only within about a decade, where there are no major ones to read.
        plt_ax.yaxis.set_minor_formatter(FormatStrFormatter("%g") if high / low < 30
                                         else NullFormatter())
        plt_ax.tick_params(axis="y", which="minor", labelsize="x-small")
        columns = 4 if plt_ax.figure.get_figwidth() >= 10 else 2  # what the width holds
        plt_ax.set_title(f"{self.model} at {'x'.join(map(str, self.input_shape))}: each "
                         f"convolution's norm and its estimates", fontsize="small",
                         pad=26 if columns == 4 else 40)
        plt_ax.legend(fontsize="small", loc="lower center", bbox_to_anchor=(0.5, 1.0),
                      ncol=columns, frameon=False)
        plt_ax.figure.tight_layout()
        return plt_ax

    def plot_densities(self, columns: int = 3) -> Any:
        """Draw each layer's singular-value density side by side (audits with ``density=True``).

        Needs matplotlib; returns the ``Figure``. Layers without a density are left out.
        """
        from ..plotting import plot_density, pyplot

        rows = [r for r in self.layers if r.density is not None]
        if not rows:
            raise ValueError("no layer of this audit has a density: run "
                             "convop.audit(..., density=True).")
        if isinstance(columns, bool) or not isinstance(columns, int) or columns < 1:
            raise ValueError(f"`columns` must be a positive integer; got {columns!r}.")
        across = min(columns, len(rows))
        down = -(-len(rows) // across)
        figure, grid = pyplot().subplots(down, across, figsize=(5.2 * across, 3.8 * down),
                                         squeeze=False)
        for ax, row in zip(grid.flat, rows):
            plot_density(row.density, ax, bins=40,
                         title=f"{row.name}: {'x'.join(map(str, row.weight_shape))} "
                               f"@{'x'.join(map(str, row.input_size))}")
        for ax in list(grid.flat)[len(rows):]:
            ax.set_visible(False)
        figure.suptitle(f"{self.model}: the singular values of each convolution",
                        fontsize="medium")
        figure.tight_layout()
        return figure

    def __str__(self) -> str:
        head = (f"audit of {self.model}, input {'x'.join(map(str, self.input_shape))}: "
                f"{len(self.layers)} convolutions in {self.seconds:.1f} s")
        # Columns asked for (or computed for some layer): sigma_min and cond, l1, l-inf.
        extra = [(field, title) for field, title in _OPTIONAL_COLUMNS
                 if any(getattr(r, field) is not None for r in self.layers)]
        lines = [head, f"{'layer':28} {'weight':>16} {'input':>9} {'sigma_max':>11} "
                       f"{'reshaped':>9} {'circular':>9} {'gram':>9}"
                       + "".join(f" {title:>11}" for _, title in extra) + f" {'s':>6}"]
        for r in self.layers:
            lines.append(
                f"{r.name[:28]:28} {'x'.join(map(str, r.weight_shape)):>16} "
                f"{'x'.join(map(str, r.input_size)):>9} {r.sigma_max:>11.6g} "
                f"{r.ratio('reshaped_kernel'):>9.3f} {r.ratio('circular'):>9.3f} "
                f"{r.ratio('gram_bound'):>9.3f}"
                + "".join(f" {_cell(getattr(r, field)):>11}" for field, _ in extra)
                + f" {r.seconds:>6.2f}")
        lines.append("(estimators as ratios to the exact sigma_max)")
        lines.append(f"product of sigma_max over the layers: {self.product():.6g} "
                     f"(reshaped kernel: {self.product('reshaped_kernel'):.6g}); a Lipschitz "
                     f"bound for a purely sequential network only")
        if self.network_bound is not None:
            b = self.network_bound
            lines.append(f"network Lipschitz bound (valid across residual connections): "
                         f"{b['sigma_max']:.6g} from the exact norms, {b['gram_bound']:.6g} "
                         f"from the Gram bounds (reshaped kernel in their place: "
                         f"{b['reshaped_kernel']:.6g}, not a bound)")
            for field, name in (("norm_1", "l1"), ("norm_inf", "l-infinity")):
                if field in b:
                    lines.append(f"network Lipschitz bound in {name}: {b[field]:.6g}")
        elif self.network_note:
            lines.append(self.network_note)
        return "\n".join(lines)


#: Columns the table shows when some layer has them: (field, heading).
_OPTIONAL_COLUMNS = (("sigma_min", "sigma_min"), ("condition_number", "cond"),
                     ("norm_1", "l1 norm"), ("norm_inf", "l-inf norm"))


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value
