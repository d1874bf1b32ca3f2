"""Lesson 06 panel: which inputs reach the last output of a stack of causal (dilated) convolutions."""
import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from .. import receptive
from ..plotting import COLORS, PANEL_MARGINS, figure
from .panel import Panel, choice, slider

GROWTH = {"d = 1 (no dilation)": 1, "d = 2^(l-1) (WaveNet)": 2, "d = 3^(l-1)": 3}
RECEPTIVE_DEFAULTS = {"kernel_size": 2, "growth": "d = 2^(l-1) (WaveNet)", "n_layers": 4}
MAX_COLS = 600  # wider grids are averaged over groups of columns before drawing
REACH_CMAP = LinearSegmentedColormap.from_list("reach", ["#ececec", COLORS["accent"]])


def _binned(grid, max_cols=MAX_COLS):
    """Average groups of s adjacent columns so at most max_cols are drawn (a wide grid would alias). -> (grid, s)."""
    width = grid.shape[1]
    s = -(-width // max_cols)                                        # ceil
    if s == 1:
        return grid, 1
    pad = (-width) % s                                               # pad on the left: the old, unseen side
    padded = np.concatenate([np.zeros((grid.shape[0], pad)), grid], axis=1)
    return padded.reshape(grid.shape[0], -1, s).mean(axis=2), s


def draw_receptive_field(fig, kernel_size, growth, n_layers):
    """Rows = levels (input at the bottom, last layer on top); a coloured cell reaches the last output (star)."""
    r = receptive.reach_grid(kernel_size, receptive.dilation_schedule(n_layers, GROWTH[growth]))
    ax = fig.axes[0]
    L = r["grid"].shape[0] - 1
    shown, s = _binned(r["grid"])
    width = shown.shape[1] * s
    extent = (-(width - 0.5), 0.5, -0.5, L + 0.5)                   # x = -(lag): the newest input sits at 0
    if not ax.images:  # build once; later calls only update data, extent, separators and text
        ax.imshow(shown, cmap=REACH_CMAP, vmin=0.0, vmax=1.0, aspect="auto", origin="lower",
                  interpolation="nearest", extent=extent)
        ax.grid(False)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("layer (0 = the input)")
        ax.add_collection(LineCollection([], colors="white", linewidths=1.5))
        ax.plot([0], [L], "*", ms=15, color=COLORS["rnn"], mec="white", clip_on=False, label="the last output")
        ax.legend(handles=[Patch(color=COLORS["accent"], label="reaches the last output"),
                           Patch(color=REACH_CMAP(0.0), label="cannot reach it"), ax.lines[0]],
                  loc="upper left", frameon=True, framealpha=0.9, edgecolor="none", fontsize=9)
    image = ax.images[0]
    image.set_data(shown)
    image.set_extent(extent)
    ax.lines[0].set_data([0], [L])
    rows = [[(extent[0], y), (extent[1], y)] for y in np.arange(L) + 0.5]
    cols = [[(x, extent[2]), (x, extent[3])] for x in -np.arange(width - 1) - 0.5] if s == 1 and width <= 80 else []
    ax.collections[0].set_segments(rows + cols)
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_yticks(np.arange(L + 1))
    d = r["dilations"]
    listed = ", ".join(map(str, d)) if len(d) <= 4 else ", ".join(map(str, d[:3])) + f", .., {d[-1]}"
    holes = f"{r['holes']} holes: only {r['n_reached']} reach it" if r["holes"] else "no holes"
    ax.set_xlabel("input position relative to the last output (steps; 0 = newest)"
                  + (f"; one column = {s} steps" if s > 1 else ""))
    ax.set_title(f"RF = 1 + Σ(k−1)d_l = {r['rf']} inputs, {holes}  (k = {kernel_size}, d = {listed})\n"
                 f"{L} layer{'s' if L > 1 else ''} deep, each one op over all steps; an RNN: T steps deep, sees all T")
    return fig


def receptive_field_panel():
    """Kernel size, dilation growth and depth -> the inputs that reach the last output of a causal conv stack."""
    d = RECEPTIVE_DEFAULTS
    controls = {
        "kernel_size": slider("kernel size k", d["kernel_size"], 2, 5, 1, integer=True),
        "growth": choice("dilation of layer l", GROWTH, d["growth"]),
        "n_layers": slider("layers L", d["n_layers"], 1, 8, 1, integer=True),
    }
    fig, _ = figure(size=(8.0, 3.8), margins={**PANEL_MARGINS, "top": 0.84, "bottom": 0.15})
    return Panel(controls, fig, draw_receptive_field,
                 caption="Coloured: the inputs (bottom row) and hidden units that reach the last output (star). "
                         "Computed from the taps of each layer; tests/test_receptive.py checks it against "
                         "torch autograd.")
