"""Lesson 05 panel: how far back the gradient reaches through each remedy for vanishing gradients."""
import numpy as np

from .. import remedies
from ..plotting import COLORS, PANEL_MARGINS, figure, finite_limits
from .panel import Panel, choice, slider

# One colour per remedy, kept by the notebook's static figures (Okabe-Ito; 04's colours where they overlap).
REMEDY_COLORS = {"tanh": COLORS["tanh"], "relu": COLORS["relu"], "irnn": COLORS["identity"],
                 "layernorm": COLORS["accent"], "batchnorm": "#56B4E9", "lstm": COLORS["lstm"]}
REMEDIES_DEFAULTS = {"remedy": "irnn", "T": 100, "weight_scale": 1.0, "gamma_x": 0.1, "forget_bias": 0.0}
BN_GAMMA_H = 0.1  # the recurrent term's gain (Cooijmans et al. §4); the panel moves the input term's gain γ_x


def _setting(remedy, weight_scale, gamma_x, forget_bias):
    extra = {"batchnorm": f", γ_x = {gamma_x:.2f} (γ_h = {BN_GAMMA_H})",
             "lstm": f", forget bias +{forget_bias:.1f}"}.get(remedy, "")
    return f"W_hh × {weight_scale:.2f}{extra}"


def draw_remedies(fig, remedy, T, weight_scale, gamma_x, forget_bias):
    """log10 ||dh_T/ds_k||_F / sqrt(H) against T - k for one remedy, with the plain tanh RNN as reference."""
    r = remedies.flow_experiment(remedy, T=T, weight_scale=weight_scale, gamma=BN_GAMMA_H, gamma_x=gamma_x,
                                 forget_bias=forget_bias)
    ref = r if remedy == "tanh" else remedies.flow_experiment("tanh", T=T, weight_scale=weight_scale)
    ax = fig.axes[0]
    if not ax.lines:  # first draw builds the artists; later draws only update them (a redraw stays < 100 ms)
        ax.plot([], [], lw=2.5, label="remedy")
        ax.plot([], [], "--", color=COLORS["bound"], lw=1.3, label="plain tanh RNN, same T and W_hh scale")
        ax.axhline(0.0, color="k", lw=0.8, zorder=1)  # under the curves: the IRNN sits on it
        ax.set_xlabel("steps back in time, T − k")
        ax.set_ylabel(r"$\log_{10}\ \|\partial h_T/\partial s_k\|_F\,/\sqrt{H}$")
        ax.legend(loc="lower left")
        ax.text(0.99, 0.03, "", transform=ax.transAxes, ha="right", fontsize=9)
    line, ref_line = ax.lines[:2]
    lo, hi = finite_limits(r["log10_norm"], ref["log10_norm"])
    zero = np.isneginf(r["log10_norm"])
    line.set_data(r["distance"], np.where(zero, lo, r["log10_norm"]))  # an exact 0 sits on the bottom edge
    ref_line.set_data(ref["distance"], np.where(np.isneginf(ref["log10_norm"]), lo, ref["log10_norm"]))
    legend = ax.get_legend()
    for artist in (line, legend.legend_handles[0]):
        artist.set_color(REMEDY_COLORS[remedy])
    legend.texts[0].set_text(remedies.LABELS[remedy])
    ax.set_ylim(lo, hi)
    ax.set_xlim(0, T - 1)
    end = r["log10_norm"][0]
    verdict = ("is exactly 0" if np.isneginf(end) else "vanishes" if end < -2 else "explodes" if end > 2
               else "survives")
    rate = round(r["rate"], 3) + 0.0  # no "-0.000"
    reach = "" if np.isneginf(end) else f" (norm $10^{{{end:.1f}}}$, {rate:+.3f} decades/step)"
    ax.set_title(f"{remedies.LABELS[remedy]}, {_setting(remedy, weight_scale, gamma_x, forget_bias)}:\n"
                 f"the gradient from {T - 1} steps back {verdict}{reach}")
    ax.texts[0].set_text("bottom edge: exactly 0 (every unit off)" if zero.any() else "")
    return fig


def remedies_panel():
    """Remedy, sequence length, recurrent weight scale, batch norm's input gain, LSTM forget bias -> gradient flow."""
    d = REMEDIES_DEFAULTS
    controls = {
        "remedy": choice("remedy", remedies.REMEDIES, d["remedy"]),
        "T": slider("sequence length T", d["T"], 10, 300, 10, integer=True),
        "weight_scale": slider("W_hh ×", d["weight_scale"], 0.25, 2.5, 0.05, fmt=".2f"),
        "gamma_x": slider("BN input gain γ_x", d["gamma_x"], 0.01, 0.5, 0.01, fmt=".2f"),
        "forget_bias": slider("LSTM forget bias +", d["forget_bias"], 0.0, 5.0, 0.1, fmt=".1f"),
    }
    margins = dict(PANEL_MARGINS, top=0.85)  # room for a two-line title
    fig, _ = figure(margins=margins)
    return Panel(controls, fig, draw_remedies,
                 caption="Numpy Jacobians at initialisation (H = 32, one weight draw) on adding-problem inputs. "
                         "γ_x acts on batch norm only (statistics of 32 sequences, held constant; the recurrent "
                         "term's gain stays γ_h = 0.1), the forget bias on the LSTM only.")
