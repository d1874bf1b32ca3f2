"""Lesson 03 panel: gradient descent meets the loss cliff of one recurrent unit, with and without clipping."""
from functools import lru_cache

import numpy as np
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullLocator

from .. import cliff
from ..plotting import COLORS, PANEL_MARGINS, figure
from .panel import Panel, choice, slider

START, STEPS = (4.0, -3.0), 100
CLIPPING_DEFAULTS = {"lr": 3.0, "clip": "norm", "threshold": 0.1, "optimizer": "sgd"}
CLIP_CHOICES = ("none", "norm", "value")
VIEW_W, VIEW_B = (0.0, 8.0), (-5.0, 3.0)
SIZE = (11.5, 3.8)
MARGINS = {**PANEL_MARGINS, "left": 0.055, "right": 0.975, "top": 0.82, "bottom": 0.14, "wspace": 0.45}
LOSS_FLOOR = 1e-12  # a loss or norm of exactly 0 is drawn here on the log axes
POWER_OF_TEN = FuncFormatter(lambda v, _: f"1e{round(np.log10(v)):d}" if v > 0 else "")  # plain text: no mathtext cost


@lru_cache(maxsize=1)
def _surface(n=161):
    """log10 E over the view, (n, n), rows = b. Computed once per process."""
    W, B = np.meshgrid(np.linspace(*VIEW_W, n), np.linspace(*VIEW_B, n))
    return np.log10(cliff.loss_and_grad(W, B)[0] + 1e-6)


def _clip_arg(clip, threshold):
    return None if clip == "none" else (clip, float(threshold))


def _build(fig):
    """Three axes: the surface with the path, loss per step, gradient norm per step."""
    fig.clear()
    if fig.get_layout_engine() is None:
        fig.subplots_adjust(**MARGINS)  # fixed margins for the live panel (clear() may have reset them)
    surf, loss_ax, norm_ax = fig.subplots(1, 3)
    im = surf.imshow(_surface(), origin="lower", extent=(*VIEW_W, *VIEW_B), aspect="auto", cmap="viridis",
                     vmin=-4, vmax=np.log10(0.5), interpolation="bilinear")
    cbar = fig.colorbar(im, cax=surf.inset_axes([1.03, 0.0, 0.04, 1.0]))
    cbar.ax.set_title(r"$\log_{10}E$", fontsize=8, pad=4)
    cbar.ax.tick_params(labelsize=8)
    cbar.set_ticks([-4, -3, -2, -1])
    surf.plot([], [], "--", color="white", lw=1.2, label="same lr, no clipping")
    surf.plot([], [], ".-", color=COLORS["accent"], lw=1.2, ms=4, label="this run")
    surf.plot([START[0]], [START[1]], "o", color="white", mec="k", ms=7, zorder=5)
    surf.plot([], [], "X", color=COLORS["accent"], mec="k", ms=9, zorder=6)
    surf.set_xlim(*VIEW_W)
    surf.set_ylim(*VIEW_B)
    surf.xaxis.set_major_locator(FixedLocator([0, 2, 4, 6, 8]))
    surf.yaxis.set_major_locator(FixedLocator([-4, -2, 0, 2]))
    surf.set_xlabel("recurrent weight w")
    surf.set_ylabel("bias b")
    surf.grid(False)
    surf.legend(loc="upper right", fontsize=8, framealpha=0.6, frameon=True)
    surf.text(0.03, 0.04, "", transform=surf.transAxes, fontsize=8, color="white")
    for ax in (loss_ax, norm_ax):
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(numticks=6))
        ax.yaxis.set_minor_locator(NullLocator())  # minor log ticks cost ~10 ms per render
        ax.yaxis.set_major_formatter(POWER_OF_TEN)
        ax.set_xlim(0, STEPS)
        ax.xaxis.set_major_locator(FixedLocator([0, 25, 50, 75, 100]))
        ax.set_xlabel("step")
    loss_ax.plot([], [], color="0.6", lw=1.2)
    loss_ax.plot([], [], color=COLORS["accent"], lw=1.5)
    loss_ax.set_ylabel("loss E")
    loss_ax.text(0.5, 1.03, "loss per step (grey: same lr, no clipping)", transform=loss_ax.transAxes,
                 ha="center", fontsize=9)  # a plain text: set_title re-measures the tick labels on every draw
    norm_ax.plot([], [], color=COLORS["tanh"], lw=1.5)
    norm_ax.plot([], [], "--", color=COLORS["sigmoid"], lw=1.2)
    norm_ax.axhline(1.0, color=COLORS["bound"], lw=1.0, ls=":")
    norm_ax.set_ylabel(r"gradient norm $\|g\|$")
    norm_ax.text(0.5, 1.03, "‖g‖ before (blue), after (red) clipping; dotted: c", transform=norm_ax.transAxes,
                 ha="center", fontsize=9)
    fig._l03_axes = (surf, loss_ax, norm_ax)
    return fig._l03_axes


def _log_limits(*arrays):
    vals = np.concatenate([np.maximum(a[np.isfinite(a)], LOSS_FLOOR) for a in arrays])
    lo, hi = float(vals.min()), float(vals.max())
    return lo / 3, hi * 3


def _verdict(r):
    where = cliff.outcome(r)
    w, b = r["theta"][-1]
    if where == "valley":
        return f"reaches the valley (final loss {r['loss'][-1]:.1e})"
    if where == "plateau":
        return (f"thrown onto the flat plateau, ends at (w, b) = ({w:.1f}, {b:.1f}) "
                f"with ‖g‖ = {r['grad_norm'][-1]:.0e} (loss {r['loss'][-1]:.3f})")
    tail = r["loss"][-10:]
    if where == "bouncing":
        return f"bouncing across the wall: last 10 losses between {tail.min():.1e} and {tail.max():.1e}"
    return f"not settled yet (loss {r['loss'][-1]:.1e})"


def draw_clipping(fig, lr, clip, threshold, optimizer):
    """Left: the path of `optimizer` on log10 E(w, b) from (4, -3); middle: loss per step; right: ||g|| per step."""
    r = cliff.descend(*START, lr, STEPS, _clip_arg(clip, threshold), optimizer)
    ref = r if clip == "none" else cliff.descend(*START, lr, STEPS, None, optimizer)
    axes = getattr(fig, "_l03_axes", None)
    surf, loss_ax, norm_ax = axes if axes is not None else _build(fig)  # build once, then only update

    ghost, path, _, end = surf.lines[:4]
    ghost.set_data(ref["theta"][:, 0], ref["theta"][:, 1])
    ghost.set_visible(clip != "none")
    path.set_data(r["theta"][:, 0], r["theta"][:, 1])
    w_end, b_end = r["theta"][-1]
    inside = VIEW_W[0] <= w_end <= VIEW_W[1] and VIEW_B[0] <= b_end <= VIEW_B[1]
    end.set_data([np.clip(w_end, *VIEW_W)], [np.clip(b_end, *VIEW_B)])
    surf.texts[0].set_text("" if inside else f"ends outside the view, at ({w_end:.3g}, {b_end:.3g})")

    steps = np.arange(STEPS + 1)
    ref_line, loss_line = loss_ax.lines[:2]
    ref_line.set_data(steps, np.maximum(ref["loss"], LOSS_FLOOR))
    ref_line.set_visible(clip != "none")
    loss_line.set_data(steps, np.maximum(r["loss"], LOSS_FLOOR))
    loss_ax.set_ylim(*_log_limits(r["loss"], ref["loss"] if clip != "none" else r["loss"]))

    raw, after, thr = norm_ax.lines[:3]
    raw.set_data(steps[:-1], np.maximum(r["grad_norm"], LOSS_FLOOR))
    clipped_norm = np.hypot(r["clipped"][:, 0], r["clipped"][:, 1])
    after.set_data(steps[:-1], np.maximum(clipped_norm, LOSS_FLOOR))
    after.set_visible(clip != "none")
    thr.set_ydata([threshold, threshold])
    thr.set_visible(clip != "none")
    norm_ax.set_ylim(*_log_limits(r["grad_norm"], np.array([threshold])))

    what = "no clipping" if clip == "none" else f"{clip} clipping at c = {threshold:g}"
    fig.suptitle(f"{optimizer.upper()}, lr {lr:g}, {what}: {_verdict(r)}", fontsize=11)
    return fig


def clipping_panel():
    """Learning rate, clipping rule, threshold and optimizer -> 100 steps on the one-unit cliff, redrawn live."""
    d = CLIPPING_DEFAULTS
    controls = {
        "lr": slider("learning rate", d["lr"], 0.05, 10.0, 0.05, fmt=".2f"),
        "clip": choice("clipping", CLIP_CHOICES, d["clip"]),
        "threshold": slider("threshold c", d["threshold"], 0.01, 2.0, 0.01, fmt=".2f"),
        "optimizer": choice("optimizer", ("sgd", "adam"), d["optimizer"]),
    }
    fig, _ = figure(ncols=3, size=SIZE, margins=MARGINS)
    return Panel(controls, fig, draw_clipping,
                 caption="One unit h_t = w·σ(h_{t−1}) + b, h_0 = 0.5, loss E = (σ(h_50) − 0.7)² "
                         "(Pascanu et al. 2013, Fig. 6). Start: white dot at (4, −3). Dark = low loss (the valley). "
                         "The wall is the sharp yellow/green edge beside it (w > 4): along b = −2.2 its gradient reaches "
                         "~1000× the median; a path may meet a gentler part of it.")
