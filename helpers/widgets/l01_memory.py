"""Lesson 01 figures: the unrolled RNN, and how strongly each input still reaches the last state."""
import numpy as np
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from .. import flow, memory
from ..plotting import COLORS, LOG10_FLOOR, PANEL_MARGINS, figure
from .panel import Panel, choice, slider

MEMORY_T = 50  # inputs x_1..x_50; the panel measures all of them in one backward pass (~3 ms)
MEMORY_DEFAULTS = {"lag": 20, "lambda_1": 1.0, "nonlinearity": "tanh", "init": "orthogonal"}


# ----------------------------------------------------------------------------- the unrolled graph

def _box(ax, xy, text, color, w=0.62, h=0.5):
    x, y = xy
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.04",
                                fc=color, ec="k", lw=1.0, alpha=0.9))
    ax.text(x, y, text, ha="center", va="center", fontsize=11)


def _arrow(ax, a, b, label="", color="k", offset=(0.0, 0.0), rad=0.0, ls="-"):
    ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=12, color=color, lw=1.4,
                                 connectionstyle=f"arc3,rad={rad}", linestyle=ls, shrinkA=0, shrinkB=0))
    if label:
        ax.text((a[0] + b[0]) / 2 + offset[0], (a[1] + b[1]) / 2 + offset[1], label, color=color,
                ha="center", va="center", fontsize=9)


def draw_unrolled(fig, T=4):
    """The folded cell (left) = the same cell unrolled over T steps (right); one W_ih, one W_hh everywhere."""
    if not 1 <= T <= 8:
        raise ValueError(f"T must be in [1, 8] to fit the figure. Expected 1..8, got {T!r}")
    ax = fig.axes[0]
    ax.clear()
    ax.set_axis_off()
    state, inp, out = "#cfe3f3", "#f3f3f3", "#fbe3c9"
    hh, ih = COLORS["rnn"], COLORS["sigmoid"]
    # folded: x_t -> [h] with a self-loop, -> y_t
    _box(ax, (0, 0), "$x_t$", inp)
    _box(ax, (0, 1.3), "$h_t$", state)
    _box(ax, (0, 2.6), "$y_t$", out)
    _arrow(ax, (0, 0.27), (0, 1.03), "$W_{ih}$", ih, (-0.32, 0))
    _arrow(ax, (0, 1.57), (0, 2.33), "$W_{hy}$", "k", (-0.32, 0))
    ax.add_patch(FancyArrowPatch((0.35, 1.42), (0.35, 1.18), arrowstyle="-|>", mutation_scale=12, color=hh, lw=1.4,
                                 connectionstyle="arc,angleA=0,angleB=0,armA=22,armB=22,rad=6"))  # self-loop
    ax.text(0.78, 1.3, "$W_{hh}$", color=hh, ha="left", va="center", fontsize=9)
    ax.text(1.45, 1.3, "=", fontsize=20, ha="center", va="center")
    # unrolled: h_0 -> h_1 -> ... -> h_T, each with its input below and its output above
    x0 = 2.2
    _box(ax, (x0, 1.3), "$h_0$", "white")
    for t in range(1, T + 1):
        cx = x0 + 1.3 * t
        _box(ax, (cx, 0), f"$x_{t}$", inp)
        _box(ax, (cx, 1.3), f"$h_{t}$", state)
        _box(ax, (cx, 2.6), f"$y_{t}$", out)
        _arrow(ax, (cx, 0.27), (cx, 1.03), "$W_{ih}$", ih, (-0.3, 0))
        _arrow(ax, (cx, 1.57), (cx, 2.33), "$W_{hy}$" if t == T else "", "k", (-0.3, 0), ls="--" if t < T else "-")
        _arrow(ax, (cx - 1.3 + 0.33, 1.3), (cx - 0.33, 1.3), "$W_{hh}$", hh, (0, 0.18))
    ax.set_xlim(-0.6, x0 + 1.3 * T + 0.5)
    ax.set_ylim(-0.4, 3.0)
    ax.set_aspect("equal")
    ax.set_title(f"Unrolled: one $W_{{ih}}$, one $W_{{hh}}$ at every step; $h_{T}$ depends on $h_0$ and all of "
                 f"$x_1, …, x_{T}$")
    return fig


# ----------------------------------------------------------------------------- the memory panel

def _verdict(lag, rel):
    if lag == 0:
        return "the newest input is the reference"
    if not np.isfinite(rel) or rel > 2.0:
        return "the OLDER input dominates"
    if rel < 0.5:
        return "later inputs dominate"
    return "both count about equally"


def draw_memory(fig, lag, lambda_1, nonlinearity, init):
    """log10 of each input's influence on h_T relative to the newest input, against steps back T - t."""
    r = memory.influence_profile(T=MEMORY_T, lambda_1=lambda_1, nonlinearity=nonlinearity, init=init)
    d = r["steps_back"]
    with np.errstate(divide="ignore"):
        y = np.clip(np.log10(r["relative"]), LOG10_FLOOR, -LOG10_FLOOR)  # 0 -> floor, overflow -> ceiling
    ref = d * np.log10(r["lambda_1"])  # a linear RNN with orthogonal W_hh: exactly lambda_1^(T - t)
    ax = fig.axes[0]
    if not ax.lines:  # the first draw builds the artists; later draws only update them
        ax.axhline(0.0, color="k", lw=0.8, label="as strong as the newest input")
        ax.plot([], [], "--", color=COLORS["bound"], lw=1.5, label=r"$\lambda_1^{\,T-t}$ (identity φ, orthogonal $W_{hh}$)")
        ax.plot([], [], label="measured")
        ax.plot([], [], "o", ms=9, color=COLORS["accent"], zorder=5, label="the chosen lag")
        ax.set_xlabel("steps back, T − t   (0 = the newest input)")
        ax.set_ylabel(r"$\log_{10}\ \|\partial h_T/\partial x_t\|\ /\ \|\partial h_T/\partial x_T\|$")
        ax.legend(fontsize=9)
        ax.text(0.0, 0.0, "", fontsize=9, va="bottom", color=COLORS["accent"], zorder=6,
                bbox={"fc": "white", "ec": "none", "alpha": 0.8, "pad": 1})
    _, reference, measured, marker = ax.lines
    reference.set_data(d, ref)
    measured.set_data(d, y)
    measured.set_color(COLORS[nonlinearity])
    ax.get_legend().legend_handles[2].set_color(COLORS[nonlinearity])
    marker.set_data([lag], [y[lag]])
    rising = max(y[-1], ref[-1]) > 0.5  # a curve ends half a decade or more above the newest input
    ax.get_legend().set_loc("upper left" if rising else "lower left")  # the empty corner ("best" costs ~20 ms)
    lo = min(y.min(), ref.min(), 0.0)
    hi = max(y.max(), ref.max(), 0.0)
    if hi - lo < 1.0:  # (nearly) flat: centre the curve, one decade tall
        lo, hi = (lo + hi) / 2 - 0.5, (lo + hi) / 2 + 0.5
    span = hi - lo
    ax.set_ylim(lo - 0.08 * span, hi + 0.12 * span)
    ax.set_xlim(-1, MEMORY_T)
    rel = r["relative"][lag]
    label = ax.texts[0]
    right = lag < 0.75 * MEMORY_T  # keep the label inside the axes
    label.set_position((lag + (0.8 if right else -0.8), y[lag] + 0.04 * span))
    label.set_horizontalalignment("left" if right else "right")
    label.set_text(f"×{rel:.1e}" if rel < 1e-2 or rel > 1e2 else f"×{rel:.2f}")
    ax.set_title(f"{nonlinearity}, {init} $W_{{hh}}$, λ₁ = {r['lambda_1']:.2f}: the input {lag} steps back "
                 f"→ {_verdict(lag, rel)}", y=1.01)  # a fixed y skips matplotlib's title auto-placement (~15 ms)
    return fig


def memory_panel():
    """Lag, largest singular value of W_hh, activation and init of W_hh -> influence of every input on h_T."""
    d = MEMORY_DEFAULTS
    controls = {
        "lag": slider("lag (steps back)", d["lag"], 0, MEMORY_T - 1, 1, integer=True),
        "lambda_1": slider("λ₁ = ‖W_hh‖₂", d["lambda_1"], 0.25, 3.0, 0.05, fmt=".2f"),
        "nonlinearity": choice("activation φ", flow.GAMMA, d["nonlinearity"]),
        "init": choice("init of W_hh", flow.INITS, d["init"]),
    }
    fig, _ = figure(margins=PANEL_MARGINS)
    return Panel(controls, fig, draw_memory,
                 caption=f"A random RNN (H = 32, inputs x_t ~ N(0, 1), T = {MEMORY_T}), no training: the slope "
                         "is set by W_hh and φ alone. Flat = every input counts the same; rising = older inputs "
                         "count more.")
