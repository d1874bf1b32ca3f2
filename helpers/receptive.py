r"""Receptive fields of causal (dilated) convolution stacks, and lesson 06's small sequence models.

A causal convolution with kernel size k and dilation d, left-padded by (k - 1) d so the length stays T:

    y_t = b + sum_{j=0}^{k-1} W_j x_{t - j d}                       (x_s = 0 for s < 0)

Output t sees the inputs t - (k-1) d .. t and nothing later. Stacking L such layers (l = 1..L):

    RF = 1 + sum_l (k_l - 1) d_l                                    (the span of inputs one output can see)

and the lags j that reach it (input t - j -> output t) are the Minkowski sum of every layer's taps
{0, d_l, 2 d_l, .., (k_l - 1) d_l}. Doubling dilations d_l = 2^(l-1) give RF = 1 + (k - 1)(2^L - 1), which is
2^L for k = 2 (WaveNet, TCN) and 2^(L+1) - 1 for k = 3; d_l = k^(l-1) gives RF = k^L with no holes and no
duplicates. Either way RF is exponential in depth, for a parameter count linear in depth. When d grows
faster than k covers (k = 2, d = 3^(l-1)) the span still obeys the formula but holes appear ("gridding").
An RNN's last state h_T depends on every x_t, t <= T, for any T: its receptive field is unbounded
(how much of that dependence survives training is lesson 04's question).

Models are batch-first, like the tasks in helpers.tasks: x (B, T, I) -> per-step outputs (B, T, O).
(Bai, Kolter & Koltun 2018, arXiv:1803.01271, §3.2-3.3; van den Oord et al. 2016, arXiv:1609.03499, §2.1.)
"""
import copy
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .tasks import _check_int
from .training import train

ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "identity": lambda h: h}
RECURRENT = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}
GATES = {"rnn": 1, "gru": 3, "lstm": 4}


# ----------------------------------------------------------------------------- receptive field (pure)

def _layers(kernel_sizes, dilations):
    """-> (k, d) as lists of ints of the same length L >= 1; an int kernel size is used for every layer."""
    if isinstance(dilations, (int, np.integer)) and not isinstance(dilations, bool):
        dilations = [dilations]
    dilations = [_check_int("dilation", d, 1) for d in dilations]
    if not dilations:
        raise ValueError("dilations must hold one int >= 1 per layer. Expected at least 1 layer, got 0")
    if isinstance(kernel_sizes, (int, np.integer)) and not isinstance(kernel_sizes, bool):
        kernel_sizes = [kernel_sizes] * len(dilations)
    kernel_sizes = [_check_int("kernel_size", k, 1) for k in kernel_sizes]
    if len(kernel_sizes) != len(dilations):
        raise ValueError(f"kernel_sizes and dilations must have one entry per layer. "
                         f"Expected {len(dilations)} kernel sizes, got {len(kernel_sizes)}")
    return kernel_sizes, dilations


def dilation_schedule(n_layers, growth):
    """Dilations d_l = growth^(l-1) for l = 1..n_layers: growth 1 -> all 1; growth 2 -> 1, 2, 4, .. (WaveNet)."""
    n_layers = _check_int("n_layers", n_layers, 1)
    growth = _check_int("growth", growth, 1)
    return [growth ** l for l in range(n_layers)]


def receptive_field(kernel_sizes, dilations):
    """RF = 1 + sum_l (k_l - 1) d_l: how many consecutive inputs one output of the stack spans.

    kernel_sizes: an int (every layer) or one int per layer; dilations: one int per layer (or an int: 1 layer).
    """
    ks, ds = _layers(kernel_sizes, dilations)
    return 1 + sum((k - 1) * d for k, d in zip(ks, ds))


def reachable_lags(kernel_sizes, dilations):
    """Sorted lags j >= 0 (int64, (n,)) such that input x_{t-j} reaches output y_t: the Minkowski sum of the
    layers' taps {0, d_l, .., (k_l - 1) d_l}. Its maximum is receptive_field(...) - 1; it has holes when the
    dilations grow faster than the kernels cover.
    """
    return layer_reach(kernel_sizes, dilations)[0]


def layer_reach(kernel_sizes, dilations):
    """Per level, the lags that reach the top output: a list of L + 1 sorted int64 arrays.

    Entry 0 is the input, entry l the output of layer l, entry L = [0] the top output itself. Level l - 1
    reaches the top through layer l's taps and everything above it.
    """
    ks, ds = _layers(kernel_sizes, dilations)
    reach = [np.zeros(1, dtype=np.int64)]
    for k, d in zip(reversed(ks), reversed(ds)):
        taps = d * np.arange(k, dtype=np.int64)                      # (k,)
        reach.append(np.unique(reach[-1][:, None] + taps[None, :]))  # Minkowski sum, sorted
    return reach[::-1]


def reach_taps(kernel_sizes, dilations):
    """The taps that carry the last output's receptive field, layer by layer: a list of L int64 arrays (n_l, 2).

    Row (a, b) of entry l - 1 is one tap of layer l: the unit a steps back at level l - 1 (0 = the input) feeds
    the unit b steps back at level l, with a - b in {0, d_l, .., (k_l - 1) d_l}. Only units that reach the top
    output appear (b in layer_reach(...)[l]), each with its k_l taps, so n_l = k_l * len(layer_reach(...)[l]).
    """
    ks, ds = _layers(kernel_sizes, dilations)
    reach = layer_reach(ks, ds)
    taps = []
    for l, (k, d) in enumerate(zip(ks, ds), start=1):
        parents = np.repeat(reach[l], k)                               # (n_l,): each reached unit k times
        children = parents + np.tile(d * np.arange(k, dtype=np.int64), len(reach[l]))
        taps.append(np.stack([children, parents], axis=1))             # (n_l, 2)
    return taps


def receptive_mask(T, kernel_sizes, dilations):
    """bool (T,): True where input x_t (t = 0..T-1) reaches the last output y_{T-1}; lags beyond T are cut."""
    T = _check_int("T", T, 1)
    lags = reachable_lags(kernel_sizes, dilations)
    mask = np.zeros(T, dtype=bool)
    mask[T - 1 - lags[lags < T]] = True
    return mask


def reach_grid(kernel_sizes, dilations):
    """Which units of every level reach the last output, on a grid (lesson 06's panel draws it).

    -> dict: grid (L + 1, W) float64, 1.0 where the unit reaches the last output (row 0 = input, row L = last
    layer); lags (W,) int64, W - 1 .. 0 steps back, left to right; rf; dilations; n_reached, the inputs that
    reach it; holes = rf - n_reached. W = rf plus a margin (>= 2) that no output can see.
    """
    ks, ds = _layers(kernel_sizes, dilations)
    reach = layer_reach(ks, ds)                                       # L + 1 arrays of lags
    rf = receptive_field(ks, ds)
    width = rf + max(2, rf // 4)
    grid = np.zeros((len(reach), width))
    for level, lags in enumerate(reach):
        grid[level, width - 1 - lags] = 1.0                           # column W - 1 is lag 0, the newest input
    return {"grid": grid, "lags": np.arange(width - 1, -1, -1, dtype=np.int64), "rf": rf, "dilations": ds,
            "n_reached": int(reach[0].size), "holes": rf - int(reach[0].size)}


# ----------------------------------------------------------------------------- models

class CausalConv1d(nn.Conv1d):
    """nn.Conv1d padded on the left only, by (k - 1) d: x (B, C_in, T) -> (B, C_out, T), y_t sees x_{<= t}."""

    def __init__(self, in_channels, out_channels, kernel_size, dilation=1):
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation)
        self.left_pad = (kernel_size - 1) * dilation

    def forward(self, x):
        return super().forward(F.pad(x, (self.left_pad, 0)))


class TCN(nn.Module):
    """A plain causal TCN: L causal convolutions (activation between them), then a linear read-out per step.

    x (B, T, input_size) -> logits (B, T, output_size). Bai et al.'s TCN adds residual blocks, weight norm and
    dropout; none of them changes the receptive field, which is all this lesson needs.
    """

    def __init__(self, input_size, channels, kernel_size, dilations, output_size, activation="relu"):
        super().__init__()
        ks, ds = _layers(kernel_size, dilations)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {list(ACTIVATIONS)}. Expected one of them, got {activation!r}")
        widths = [_check_int("input_size", input_size, 1)] + [_check_int("channels", channels, 1)] * len(ds)
        self.convs = nn.ModuleList(CausalConv1d(a, b, k, d) for a, b, k, d in zip(widths, widths[1:], ks, ds))
        self.head = nn.Linear(channels, _check_int("output_size", output_size, 1))
        self.kernel_sizes, self.dilations, self.activation = ks, ds, activation

    @property
    def receptive_field(self):
        return receptive_field(self.kernel_sizes, self.dilations)

    def forward(self, x):
        phi = ACTIVATIONS[self.activation]
        h = x.transpose(1, 2)                     # (B, I, T): Conv1d wants channels first
        for conv in self.convs:
            h = phi(conv(h))                      # (B, C, T), one batched op per layer
        return self.head(h.transpose(1, 2))       # (B, T, O)


class RecurrentNet(nn.Module):
    """nn.RNN / nn.GRU / nn.LSTM (batch-first) and a linear read-out per step: x (B, T, I) -> (B, T, O)."""

    def __init__(self, kind, input_size, hidden_size, output_size):
        super().__init__()
        if kind not in RECURRENT:
            raise ValueError(f"kind must be one of {list(RECURRENT)}. Expected one of them, got {kind!r}")
        self.kind = kind
        self.rnn = RECURRENT[kind](_check_int("input_size", input_size, 1), _check_int("hidden_size", hidden_size, 1),
                                   batch_first=True)
        self.head = nn.Linear(hidden_size, _check_int("output_size", output_size, 1))

    def forward(self, x):
        return self.head(self.rnn(x)[0])          # (B, T, H) -> (B, T, O)


def count_params(model):
    """Number of trainable scalars in model."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def tcn_param_count(input_size, channels, kernel_sizes, dilations, output_size):
    """Parameters of TCN(...) by formula: layer l has k_l C_in C_out + C_out, the head C O + O. No T in it."""
    ks, _ = _layers(kernel_sizes, dilations)
    widths = [input_size] + [channels] * len(ks)
    convs = sum(k * a * b + b for k, a, b in zip(ks, widths, widths[1:]))
    return convs + channels * output_size + output_size


def recurrent_param_count(kind, input_size, hidden_size, output_size):
    """Parameters of RecurrentNet(...) by formula: G H (I + H) + 2 G H (two biases), plus the head. No T in it."""
    if kind not in GATES:
        raise ValueError(f"kind must be one of {list(GATES)}. Expected one of them, got {kind!r}")
    G, H = GATES[kind], hidden_size
    return G * H * (input_size + H) + 2 * G * H + H * output_size + output_size


# ----------------------------------------------------------------------------- autograd checks

def gradient_support(model, T, input_size, seed=0):
    """bool (T,): True where d(last output)/d x_t is non-zero, by torch autograd in float64.

    One random sequence x (1, T, input_size) through a float64 copy of the model, (1, T, I) -> (1, T, O).
    Every output unit of the last step gets its own backward pass (no cancellation between units), and
    the |gradients| are summed.
    """
    return gradient_magnitude(model, T, input_size, seed) > 0


def gradient_magnitude(model, T, input_size, seed=0):
    """float64 (T,): sum over the last step's output units o of ||d y_{T-1, o} / d x_t||_1, per input step t."""
    T = _check_int("T", T, 1)
    input_size = _check_int("input_size", input_size, 1)
    model = copy.deepcopy(model).double()                             # the caller's model is untouched
    x = torch.randn(1, T, input_size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64,
                    requires_grad=True)
    last = model(x)[0, -1]                                            # (O,)
    total = torch.zeros(T, dtype=torch.float64)
    for o in range(last.numel()):
        (g,) = torch.autograd.grad(last[o], x, retain_graph=o + 1 < last.numel())
        total += g[0].abs().sum(-1)                                   # (T,)
    return total.numpy()


# ----------------------------------------------------------------------------- tasks, training, timing

def last_step_loss(model, x, y):
    """Cross-entropy of the last step's logits: x (B, T, I), y (B,) class ids."""
    return F.cross_entropy(model(x)[:, -1], y)


def fit_last_step(model, task, *, steps, lr=1e-2, batch_size=64, seed=0):
    """Train model (Adam) on fresh batches task(batch_size, rng=...) -> (x, y) numpy; loss on the last step.

    Deterministic for a fixed seed (build the model under training.set_seed first). -> training.History.
    """
    batch_size = _check_int("batch_size", batch_size, 1)
    draws = np.random.default_rng(_check_int("seed", seed, 0))

    def batches(step):
        x, y = task(batch_size, rng=draws)
        return torch.from_numpy(x), torch.from_numpy(y)
    return train(model, batches, last_step_loss, steps=steps, optimizer="adam", lr=lr, seed=seed, log_every=10)


@torch.no_grad()
def last_step_accuracy(model, x, y):
    """Fraction of sequences whose last-step argmax equals y. x (N, T, I) numpy, y (N,) numpy."""
    model.eval()
    x = torch.from_numpy(np.asarray(x)).to(next(model.parameters()).dtype)
    return float((model(x)[:, -1].argmax(-1).numpy() == np.asarray(y)).mean())


def graph_depth(output):
    """Longest chain of dependent operations behind `output`: the depth of its autograd graph (an int).

    Every node of the graph (output.grad_fn and the nodes it points to, leaves excluded) is one op of the
    forward pass; a chain of n nodes is n ops that must run one after another, whatever the hardware. An RNN's chain grows
    with T (each h_t needs h_{t-1}); a conv stack's is set by its layers, not by T. Iterative, so a graph
    tens of thousands of ops deep does not hit Python's recursion limit.
    """
    if not isinstance(output, torch.Tensor) or output.grad_fn is None:
        raise ValueError("output must be a tensor computed with autograd on. Expected a tensor with a grad_fn, "
                         f"got {type(output).__name__}" + ("" if not isinstance(output, torch.Tensor) else " without one"))
    depth = {}
    stack = [(output.grad_fn, False)]
    while stack:
        node, children_done = stack.pop()
        if node in depth:
            continue
        children = [child for child, _ in node.next_functions
                    if child is not None and not hasattr(child, "variable")]     # AccumulateGrad: a leaf, not an op
        if children_done:
            depth[node] = 1 + max((depth[c] for c in children), default=0)
        else:
            stack.append((node, True))
            stack.extend((c, False) for c in children if c not in depth)
    return depth[output.grad_fn]


@torch.no_grad()
def forward_time(model, x, repeats=5):
    """Fastest wall time (s) of model(x) over `repeats` calls after one warm-up call, without autograd.

    The minimum, as timeit recommends: on a shared machine the slower runs measure the neighbours, not the model.
    """
    repeats = _check_int("repeats", repeats, 1)
    model.eval()
    model(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - start)
    return min(times)


def layers_to_cover(lag, kernel_size=2):
    """Fewest layers L with dilations kernel_size^(l-1) whose RF = kernel_size^L reaches lag (RF > lag)."""
    lag = _check_int("lag", lag, 0)
    k = _check_int("kernel_size", kernel_size, 2)
    L = max(1, math.ceil(math.log(lag + 1, k) - 1e-12))
    while k ** L <= lag:  # guard against float rounding in the log
        L += 1
    return L
