"""Lesson 06 panel: which inputs reach the last output of a stack of causal (dilated) convolutions, and through
which taps."""
import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from .. import receptive
from ..plotting import COLORS, PANEL_MARGINS, figure
from .panel import Panel, choice, slider

GROWTH = {"d = 1 (no dilation)": 1, "d = 2^(l-1) (WaveNet)": 2, "d = 3^(l-1)": 3}
RECEPTIVE_DEFAULTS = {"kernel_size": 2, "growth": "d = 2^(l-1) (WaveNet)", "n_layers": 4}
MAX_COLS = 600     # wider grids are averaged over groups of columns before drawing
NODE_COLS = 140    # up to this many positions every unit is drawn as its own dot
MAX_TAPS = 800     # taps drawn as lines, from the top layer down, while the total stays <= this (more is a blur)
UNREACHED = "#d9d9d9"
TAP_COLOR = "#7a4f00"  # a dark shade of the accent colour: the taps stay visible over the reached cells
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


def _tap_path(taps, max_taps=MAX_TAPS):
    """The taps of the top layers whose total count stays <= max_taps (lower layers hold the most taps), as one
    polyline broken by NaNs: x = -(steps back), y = level, 3 points per tap. -> (x, y, layers drawn).
    One Line2D draws thousands of taps far faster than a LineCollection of as many segments."""
    kept, total = [], 0
    for level in range(len(taps), 0, -1):                           # layer L first: it has the fewest taps
        t = taps[level - 1]                                          # (n, 2): (child lag, parent lag)
        if total + len(t) > max_taps:
            break
        kept.append((t, level))
        total += len(t)
    x, y = np.full((total, 3), np.nan), np.full((total, 3), np.nan)  # (n, 3): child, parent, break
    row = 0
    for t, level in kept:
        x[row:row + len(t), 0], x[row:row + len(t), 1] = -t[:, 0], -t[:, 1]
        y[row:row + len(t), 0], y[row:row + len(t), 1] = level - 1, level
        row += len(t)
    return x.ravel(), y.ravel(), len(kept)


def draw_receptive_field(fig, kernel_size, growth, n_layers):
    """Dots = units (input at the bottom, last layer on top), lines = the taps that carry the last output's
    receptive field; an orange unit reaches the last output (star). Wide stacks: shaded columns instead of dots."""
    ds = receptive.dilation_schedule(n_layers, GROWTH[growth])
    r = receptive.reach_grid(kernel_size, ds)
    taps = receptive.reach_taps(kernel_size, ds)
    ax = fig.axes[0]
    L = r["grid"].shape[0] - 1
    width = r["grid"].shape[1]
    dots = width <= NODE_COLS
    shown, s = _binned(r["grid"])
    extent = (-(shown.shape[1] * s - 0.5), 0.5, -0.5, L + 0.5)       # x = -(steps back): the newest input at 0
    if not ax.images:  # build once; later calls only update data, extents, sizes and text
        ax.imshow(shown, cmap=REACH_CMAP, vmin=0.0, vmax=1.0, aspect="auto", origin="lower",
                  interpolation="nearest", extent=extent, zorder=0)
        ax.grid(False)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("layer (0 = the input)")
        ax.add_collection(LineCollection([], colors="white", linewidths=1.5, zorder=1))       # row separators
        ax.plot([], [], color=TAP_COLOR, lw=1.0, zorder=2)                                   # the taps
        ax.scatter([], [], color=UNREACHED, zorder=3, linewidths=0)                           # units out of reach
        ax.scatter([], [], color=COLORS["accent"], edgecolors=TAP_COLOR, zorder=4)            # units in reach
        ax.plot([0], [L], "*", ms=16, color=COLORS["rnn"], mec="white", clip_on=False, zorder=5)
        ax.legend(handles=[
            Line2D([], [], ls="", marker="o", ms=8, color=COLORS["accent"], mec=TAP_COLOR, label="reaches the last output"),
            Line2D([], [], ls="", marker="o", ms=8, color=UNREACHED, label="cannot reach it"),
            Line2D([], [], color=TAP_COLOR, lw=1.0, label="a tap (kernel weight)"),
            Line2D([], [], ls="", marker="*", ms=12, color=COLORS["rnn"], label="the last output")],
            loc="upper left", frameon=True, framealpha=0.92, edgecolor="none", fontsize=9)
    image = ax.images[0]
    separators, out_of_reach, in_reach = ax.collections[:3]
    tap_lines, star = ax.lines[:2]
    image.set_visible(not dots)
    out_of_reach.set_visible(dots)
    in_reach.set_visible(dots)
    if dots:
        level, col = np.nonzero(r["grid"] >= 0)                      # every unit, (n,) each
        hit = r["grid"][level, col] == 1.0
        xy = np.stack([col - (width - 1), level], axis=1).astype(float)
        size = min(80.0, (420.0 / width) ** 2)                        # dot area (pt^2) shrinks as the row gets longer
        out_of_reach.set_offsets(xy[~hit])
        in_reach.set_offsets(xy[hit])
        out_of_reach.set_sizes([0.6 * size])
        in_reach.set_sizes([size])
        in_reach.set_linewidths([0.8 if width <= 40 else 0.0])
        separators.set_segments([])
    else:
        image.set_data(shown)
        image.set_extent(extent)
        separators.set_segments([[(extent[0], y), (extent[1], y)] for y in np.arange(L) + 0.5])
    x, y, drawn = _tap_path(taps)
    tap_lines.set_data(x, y)
    tap_lines.set_linewidth(1.2 if width <= 40 else 0.8 if width <= NODE_COLS else 0.5)
    star.set_data([0], [L])
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_yticks(np.arange(L + 1))
    listed = ", ".join(map(str, ds)) if len(ds) <= 4 else ", ".join(map(str, ds[:3])) + f", .., {ds[-1]}"
    holes = f"{r['holes']} holes: only {r['n_reached']} reach it" if r["holes"] else "no holes"
    notes = []
    if s > 1:
        notes.append(f"one column = {s} steps, shade = fraction reached")
    if drawn < L:
        notes.append(f"taps of the top {drawn} of {L} layers drawn" if drawn else "too many taps to draw")
    ax.set_xlabel("input position relative to the last output (steps; 0 = newest)"
                  + (f"\n[{'; '.join(notes)}]" if notes else ""))
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
    fig, _ = figure(size=(8.0, 3.8), margins={**PANEL_MARGINS, "top": 0.84, "bottom": 0.19})
    return Panel(controls, fig, draw_receptive_field,
                 caption="Orange dots: the inputs (bottom row) and hidden units that reach the last output (star); "
                         "lines: the taps that connect them, k per unit. Computed from each layer's taps; "
                         "tests/test_receptive.py checks the reached inputs against torch autograd.")
