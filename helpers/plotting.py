"""One figure style for the collection: readable on a laptop and on a projector."""
import matplotlib
import numpy as np
from matplotlib.figure import Figure

STYLE = {
    "figure.dpi": 90, "savefig.dpi": 90, "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10,
    "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
    "legend.frameon": False, "lines.linewidth": 2.0,
}
# Fixed colours so a concept keeps its colour across notebooks (colour-blind safe: Okabe-Ito).
COLORS = {"tanh": "#0072B2", "sigmoid": "#D55E00", "relu": "#009E73", "identity": "#CC79A7",
          "rnn": "#0072B2", "lstm": "#D55E00", "gru": "#009E73", "bound": "#555555", "accent": "#E69F00"}
LOG10_FLOOR = -320.0  # below float64's smallest subnormal: where an exact 0 is drawn on a log10 axis


def use_style():
    """Apply STYLE globally (notebooks call this once in their setup cell)."""
    matplotlib.rcParams.update(STYLE)


def figure(ncols=1, nrows=1, size=(8.0, 3.6), margins=None):
    """A pyplot-free Figure (it never leaks into a cell's output by itself) and its axes.

    margins: None for constrained layout (static figures), or a dict for subplots_adjust: live panels use
    fixed margins because constrained layout re-measures every text on each redraw (~25 ms here).
    """
    use_style()
    fig = Figure(figsize=size, layout="constrained" if margins is None else None)
    if margins is not None:
        fig.subplots_adjust(**margins)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, (axes[0, 0] if nrows * ncols == 1 else axes.ravel())


PANEL_MARGINS = {"left": 0.11, "right": 0.98, "bottom": 0.14, "top": 0.9, "wspace": 0.25}


def finite_limits(*arrays, pad=0.08, min_span=1.0):
    """(lo, hi) around the finite values of the arrays, padded, at least min_span tall; (-1, 1) if none is finite."""
    vals = np.concatenate([np.ravel(a) for a in arrays])
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return -1.0, 1.0
    lo, hi = float(vals.min()), float(vals.max())
    span = max(hi - lo, min_span)
    return lo - pad * span, hi + pad * span
