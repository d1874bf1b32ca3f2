"""Lesson 04 panels: gradient decay through time, and each input's influence on the final state."""
import numpy as np

from .. import flow
from ..plotting import COLORS, LOG10_FLOOR, PANEL_MARGINS, figure, finite_limits
from .panel import Panel, choice, slider

DECAY_DEFAULTS = {"T": 100, "nonlinearity": "tanh", "lambda_1": 1.0, "H": 32, "init": "orthogonal"}
INFLUENCE_DEFAULTS = {"T": 100, "weight_scale": 1.0, "forget_bias": 0.0}


def draw_decay(fig, T, nonlinearity, lambda_1, H, init):
    """log10 ||dh_T/dh_k||_2 against the distance T - k, with the Pascanu bound (gamma * lambda_1)^(T - k)."""
    r = flow.decay_experiment(T=T, nonlinearity=nonlinearity, lambda_1=lambda_1, H=H, init=init, ord=2)
    ax = fig.axes[0]
    if not ax.lines:  # first draw builds the artists; later draws only update them (a redraw stays < 100 ms)
        ax.plot([], [], label=r"measured $\|\partial h_T/\partial h_k\|_2$")
        ax.plot([], [], "--", color=COLORS["bound"], lw=1.5, label=r"bound $(\gamma\lambda_1)^{T-k}$")
        ax.axhline(0.0, color="0.6", lw=0.8, zorder=0)  # norm 1: neither vanishing nor exploding
        ax.set_xlabel("steps back in time, T − k")
        ax.set_ylabel(r"$\log_{10}$ gradient norm")
        ax.legend(loc="lower left")
        ax.text(0.99, 0.03, "", transform=ax.transAxes, ha="right", fontsize=9)
    measured, bound = ax.lines[:2]
    lo, hi = finite_limits(r["log10_norm"], r["log10_bound"])
    zero = np.isneginf(r["log10_norm"])
    measured.set_data(r["distance"], np.where(zero, lo, r["log10_norm"]))  # an exact 0 sits on the bottom edge
    for artist in (measured, ax.get_legend().legend_handles[0]):
        artist.set_color(COLORS[nonlinearity])
    bound.set_data(r["distance"], r["log10_bound"])
    ax.set_ylim(lo, hi)
    ax.set_xlim(0, T)
    rate = r["rate"]
    verdict = "vanishes" if rate < -1e-3 else "explodes" if rate > 1e-3 else "is preserved"
    ax.set_title(f"{nonlinearity}, {init} W, λ₁ = {r['lambda_1']:.2f}, γλ₁ = {r['gamma'] * r['lambda_1']:.2f}: "
                 f"the gradient {verdict} ({rate:+.3f} decades/step)", y=1.0)  # fixed y: skips auto-placement
    ax.texts[0].set_text("bottom edge: exactly 0 (every unit off)" if zero.any() else "")
    return fig


def decay_panel():
    """Sequence length, activation, target λ₁, hidden size and initialisation -> gradient decay."""
    d = DECAY_DEFAULTS
    controls = {
        "T": slider("sequence length T", d["T"], 10, 1000, 10, integer=True),
        "nonlinearity": choice("activation", flow.GAMMA, d["nonlinearity"]),
        "lambda_1": slider("λ₁ = ‖W_hh‖₂", d["lambda_1"], 0.1, 3.0, 0.05, fmt=".2f"),
        "H": slider("hidden size H", d["H"], 2, 32, 1, integer=True),
        "init": choice("init of W_hh", flow.INITS, d["init"]),
    }
    fig, _ = figure(margins=PANEL_MARGINS)
    return Panel(controls, fig, draw_decay,
                 caption="Dashed: Pascanu et al.'s bound (γλ₁)^(T−k). The measured norm never rises above it, so γλ₁ < 1 forces vanishing.")


def draw_influence(fig, T, weight_scale, forget_bias):
    """log10 ||dh_T/dx_k||_F against the distance T - 1 - k for an RNN, LSTM and GRU on the same inputs."""
    r = flow.influence_experiment(T=T, weight_scale=weight_scale, forget_bias=forget_bias)
    ax = fig.axes[0]
    if not ax.lines:  # build once, update after
        for kind in r:
            ax.plot([], [], color=COLORS[kind], label=kind.upper())
        ax.set_xlabel("steps back in time, T − 1 − k")
        ax.set_ylabel(r"$\log_{10}\|\partial h_T/\partial x_k\|_F$")
        ax.legend(loc="lower left")
    distance = np.arange(T - 1, -1, -1)  # x_{T-1} is 0 steps back
    ys = {}
    with np.errstate(divide="ignore"):
        for line, (kind, norms) in zip(ax.lines, r.items()):
            ys[kind] = np.clip(np.log10(norms), LOG10_FLOOR, None)
            line.set_data(distance, ys[kind])
    ax.set_ylim(*finite_limits(*ys.values()))
    ax.set_xlim(0, T - 1)
    oldest = {k: v[0] for k, v in ys.items()}
    best = max(oldest, key=oldest.get)
    ax.set_title(f"W_hh × {weight_scale:.2f}, LSTM forget bias +{forget_bias:.1f}: "
                 f"x_0 reaches h_T best through the {best.upper()} (1e{oldest[best]:.0f})", y=1.0)
    return fig


def influence_panel():
    """Sequence length, recurrent weight scale, LSTM forget bias -> influence of each input on h_T, per cell."""
    d = INFLUENCE_DEFAULTS
    controls = {
        "T": slider("sequence length T", d["T"], 10, 150, 10, integer=True),
        "weight_scale": slider("recurrent weights ×", d["weight_scale"], 0.25, 4.0, 0.05, fmt=".2f"),
        "forget_bias": slider("LSTM forget-gate bias +", d["forget_bias"], 0.0, 5.0, 0.1, fmt=".1f"),
    }
    fig, _ = figure(margins=PANEL_MARGINS)
    return Panel(controls, fig, draw_influence,
                 caption="Torch's default init, hidden size 32, the same random inputs for the three cells.")
