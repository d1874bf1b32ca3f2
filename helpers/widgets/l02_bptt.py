"""Lesson 02 panel: truncated BPTT, per-step gradient contributions and the drift of the gradient's direction."""
import numpy as np
from matplotlib.ticker import FixedLocator, MaxNLocator, NullLocator

from .. import bptt
from ..plotting import COLORS, PANEL_MARGINS, figure, finite_limits
from .panel import Panel, slider

TRUNCATION_DEFAULTS = {"k": 10, "lambda_1": 1.0}
T_PANEL = 100
MARGINS = {**PANEL_MARGINS, "top": 0.8, "left": 0.09, "bottom": 0.15, "wspace": 0.25}  # room for the suptitle


def draw_truncation(fig, k, lambda_1):
    """Left: ||delta_s h_{s-1}^T||_F per step s, full vs truncated to k steps. Right: cos(truncated, full) vs window."""
    r = bptt.truncation_experiment(T=T_PANEL, lambda_1=lambda_1, k=k)
    left, right = fig.axes[:2]
    if not left.lines:  # first draw builds the artists; later draws only update them
        left.plot([], [], color=COLORS["bound"], lw=1.5, ls="--", zorder=3, label="full BPTT")
        left.plot([], [], color=COLORS["tanh"], label="truncated")
        left.plot([], [], color=COLORS["sigmoid"], lw=1.2, label="dropped")
        left.set_xlabel("time step s")
        left.set_ylabel(r"$\log_{10}\|\delta_s h_{s-1}^\top\|_F$")
        left.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=3, fontsize=9, handlelength=1.5, columnspacing=1.0)
        right.plot([], [], color=COLORS["tanh"])
        right.plot([], [], "o", color=COLORS["accent"], ms=8)
        right.axhline(1.0, color="k", lw=0.8)
        right.set_xscale("log")
        right.set_xlim(0.9, T_PANEL * 1.1)
        right.xaxis.set_major_locator(FixedLocator([1, 2, 5, 10, 20, 50, 100]))
        right.xaxis.set_major_formatter("{x:.0f}")
        right.xaxis.set_minor_locator(NullLocator())  # minor log ticks cost ~10 ms per render
        right.set_xlabel("window k (steps covered)")
        right.set_ylabel("cos(truncated, full)")
        right.yaxis.set_major_locator(FixedLocator([0.0, 0.25, 0.5, 0.75, 1.0]))
        left.xaxis.set_major_locator(FixedLocator([0, 25, 50, 75, 100]))
        left.yaxis.set_major_locator(MaxNLocator(5, steps=[1, 2, 5, 10]))
        fig.suptitle("")
    s = np.arange(T_PANEL)
    ys = []
    with np.errstate(divide="ignore"):
        for line, key in zip(left.lines[:3], ("step_norm_full", "step_norm_truncated", "step_norm_dropped")):
            y = np.log10(r[key])
            y[~np.isfinite(y)] = np.nan  # exactly 0 (nothing dropped in the last k steps): no line there
            line.set_data(s, y)
            ys.append(y)
    left.get_legend().texts[1].set_text(f"truncated, k = {k}")
    left.set_ylim(*finite_limits(*ys))
    left.set_xlim(0, T_PANEL - 1)
    curve, dot = right.lines[:2]
    curve.set_data(r["window"], r["cosine"])
    dot.set_data([k], [r["cos_k"]])
    right.set_ylim(min(0.0, float(r["cosine"].min())) - 0.05, 1.05)
    angle = np.degrees(np.arccos(np.clip(r["cos_k"], -1.0, 1.0)))
    fig.suptitle(f"λ₁ = {lambda_1:.2f}, k = {k}: the truncated gradient is {angle:.0f}° off the full one "
                 f"(cos {r['cos_k']:.3f})", fontsize=11)
    return fig


def truncation_panel():
    """Truncation window k and recurrent weight scale λ₁ -> per-step contributions and cos(truncated, full)."""
    d = TRUNCATION_DEFAULTS
    controls = {
        "k": slider("window k", d["k"], 1, T_PANEL, 1, integer=True),
        "lambda_1": slider("λ₁ = ‖W_hh‖₂", d["lambda_1"], 0.3, 1.5, 0.05, fmt=".2f"),
    }
    fig, _ = figure(ncols=2, size=(9.0, 3.4), margins=MARGINS)
    return Panel(controls, fig, draw_truncation,
                 caption="tanh RNN, H = 32, W_hh orthogonal × λ₁, one sequence of T = 100 steps, a squared-error loss at every step. "
                         "Sliding window: each loss's window covers its own step and k − 1 earlier ones "
                         "(k = 1: the local-only gradient; k = T: full BPTT).")
