"""Lesson 07 panel: sampling temperature -> next-character distribution of a character model, and a sample.

With no model the panel uses a bigram model counted from the corpus (helpers.charmodel.BigramModel, built
once in a few ms: the panel never trains). The notebook passes its trained GRU instead.
"""
import functools

import numpy as np

from .. import charmodel, tasks
from ..plotting import COLORS, PANEL_MARGINS, figure
from .panel import Panel, choice, slider

PROMPTS = ("A recurrent network reads the ", "The hidden st", "the gradient")
SAMPLING_DEFAULTS = {"temperature": 1.0, "prompt": PROMPTS[0], "seed": 0}
TOP_K, SAMPLE_LEN = 16, 60
SIZE, MARGINS = (8.0, 3.9), {**PANEL_MARGINS, "bottom": 0.25, "top": 0.9}
SHOW = {" ": "␣", "\n": "⏎"}  # printable stand-ins for the invisible characters (tick labels)


@functools.lru_cache(maxsize=1)
def corpus_vocab():
    """(stoi, itos) of the shipped corpus: the vocabulary every model of lesson 07 uses."""
    return tasks.char_vocab(tasks.load_corpus())


@functools.lru_cache(maxsize=1)
def default_model():
    """The bigram count model of the whole corpus (the panel's default; deterministic, no training)."""
    stoi, itos = corpus_vocab()
    return charmodel.BigramModel(tasks.encode(tasks.load_corpus(), stoi), len(itos))


def _show(text, space=True):
    """Make invisible characters visible: always the newline, the space only where asked (tick labels)."""
    return "".join(ch if ch == " " and not space else SHOW.get(ch, ch) for ch in text)


def draw_sampling(fig, temperature, prompt, seed, model=None):
    """Bars: the top next characters after `prompt` at temperature tau (filled) and at tau = 1 (outline);
    below, a sample of SAMPLE_LEN characters drawn at tau with this seed."""
    model = default_model() if model is None else model
    stoi, itos = corpus_vocab()
    if model.vocab_size != len(itos):
        raise ValueError(f"model.vocab_size must match the corpus vocabulary. Expected {len(itos)}, "
                         f"got {model.vocab_size}")
    prompt_ids = tasks.encode(prompt, stoi)
    r = charmodel.temperature_view(model, prompt_ids, temperature, top_k=TOP_K, n_sample=SAMPLE_LEN, seed=seed)
    ax = fig.axes[0]
    k = len(r["top"])
    if not ax.patches:  # first draw builds the artists; later draws only update them
        ax.bar(np.arange(k), np.zeros(k), width=0.8, color=COLORS["gru"], label="at τ")
        ax.bar(np.arange(k), np.zeros(k), width=0.8, fill=False, edgecolor=COLORS["bound"], lw=1.2,
               label="at τ = 1")
        ax.axhline(1.0 / len(itos), color=COLORS["accent"], ls="--", lw=1.2, label="uniform 1/V")
        ax.grid(False, axis="x")  # bars need no vertical grid (and 16 fewer lines to render)
        ax.set_xticks(np.arange(k))
        ax.set_xlim(-0.6, k - 0.4)
        ax.set_ylabel("P(next character)")
        ax.legend(loc="upper right", fontsize=9)
        ax.text(0.99, 0.55, "", transform=ax.transAxes, ha="right", fontsize=9)
        # the sample, under the x label, in axes coordinates so constrained layout (static figures) makes room
        ax.text(-0.1, -0.3, "", transform=ax.transAxes, family="monospace", fontsize=9, va="top", clip_on=False)
    filled, outline = ax.containers[:2]
    for bar, p in zip(filled, r["probs"]):
        bar.set_height(p)
    for bar, p1 in zip(outline, r["probs_1"]):
        bar.set_height(p1)
    labels = [_show(itos[i]) for i in r["top"]]
    if list(getattr(ax.xaxis.get_major_formatter(), "seq", [])) != labels:  # new prompt (τ never reorders)
        ax.set_xticklabels(labels, fontsize=11)
    ax.set_ylim(0.0, 1.12 * max(r["probs"].max(), r["probs_1"].max()))
    ax.texts[0].set_text(f"other {len(itos) - k} chars: {r['rest']:.1%}")
    if abs(temperature - 1.0) < 1e-9:
        what, ref = "(the model's own)", ""
    else:
        what = "sharpens" if temperature < 1.0 else "flattens"
        ref = f" (τ = 1: {r['entropy_1']:.2f})"
    ax.set_title(f"τ = {temperature:.2f} {what}: entropy {r['entropy']:.2f} nats{ref} "
                 f"≈ {np.exp(r['entropy']):.1f} likely next characters")
    ax.set_xlabel(f"next character after “{prompt}” (␣ space)")
    ax.texts[1].set_text(f"seed {seed}: …{_show(prompt[-16:], space=False)}▸"
                          f"{_show(tasks.decode(r['sample'], itos), space=False)}")
    return fig


def sampling_panel(model=None):
    """Temperature, prompt and seed -> next-character distribution and a sample; model: a trained
    charmodel.CharRNN over the corpus vocabulary (default: the corpus bigram model)."""
    d = SAMPLING_DEFAULTS
    controls = {
        "temperature": slider("temperature τ", d["temperature"], 0.1, 2.0, 0.05, fmt=".2f"),
        "prompt": choice("prompt", PROMPTS, d["prompt"]),
        "seed": slider("sample seed", d["seed"], 0, 9, 1, integer=True),
    }
    fig, _ = figure(size=SIZE, margins=MARGINS)
    name = "bigram counts (context: the last character only)" if model is None else type(model).__name__
    return Panel(controls, fig, functools.partial(draw_sampling, model=model),
                 caption=f"Model: {name}. p_i ∝ exp(z_i / τ): τ < 1 sharpens, τ > 1 flattens, "
                         "the ranking never changes.")
