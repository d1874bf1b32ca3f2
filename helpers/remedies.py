r"""Remedies for vanishing gradients in a one-layer recurrent net, as small torch models and numpy Jacobians.

Six recurrent cores, each reading x (B, T, I) batch-first and returning the states h_1..h_T:

    tanh       h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)            torch's default init
    relu       h_t = relu(same)                                              torch's default init
    irnn       relu, W_hh = I, b_ih = b_hh = 0                               Le, Jaitly & Hinton 2015
    layernorm  h_t = tanh(LN(W_ih x_t + W_hh h_{t-1}; g, b))                 Ba, Kiros & Hinton 2016 §3.1
    batchnorm  h_t = tanh(BN_t(W_hh h_{t-1}; γ_h) + BN_t(W_ih x_t; γ_x) + b)   Cooijmans et al. 2016 §3
    lstm       torch.nn.LSTM's equations, torch's default init              Hochreiter & Schmidhuber 1997

"Torch's default init" draws every weight and bias from U(-1/sqrt(H), 1/sqrt(H)); the normalised cores
reuse an nn.RNNCell(bias=False) for W_ih, W_hh, so under the same seed they start from the same weights
as the tanh core. BN_t normalises over the batch at step t in training; for evaluation it keeps running
statistics both per step (Cooijmans et al.) and in one set shared by all steps (what reusing one
nn.BatchNorm1d at every step does), and `set_bn_stats` picks which one is used. γ_h = γ_x = gamma
(0.1 by default, Cooijmans et al. §4). `set_population_statistics` recomputes both sets with the final
weights after training (Ioffe & Szegedy 2015, Alg. 2).

Gradient flow is measured two ways that agree (tests/test_remedies.py):
    state_grad_norms(model, x)        torch autograd on a batch: RMS over sequences of ||dL/ds_k||,
                                      L = sum_b v_b . h_T^(b) with random unit vectors v_b
    jacobian_log10_norms(remedy, ...) numpy, one sequence: log10 ||dh_T/ds_k||_F / sqrt(H)
Both estimate the same number, since E_v ||J^T v||^2 = ||J||_F^2 / H for v uniform on the unit sphere.
s_k is h_k, or the pair (h_k, c_k) for the LSTM; k = 1..T (the zero initial state is left out: with
batch norm the recurrent term W_hh h_0 = 0 has zero variance at the first step).
"""
import copy

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import cells, flow, tasks
from .tasks import _check_int

REMEDIES = ("tanh", "relu", "irnn", "layernorm", "batchnorm", "lstm")
LABELS = {"tanh": "tanh RNN", "relu": "ReLU RNN (default init)", "irnn": "IRNN (ReLU, W_hh = I)",
          "layernorm": "tanh RNN + layer norm", "batchnorm": "tanh RNN + recurrent BN", "lstm": "LSTM"}
BN_STATS = ("per_step", "shared")


def _check_remedy(remedy):
    if remedy not in REMEDIES:
        raise ValueError(f"remedy must be one of {REMEDIES}. Expected one of them, got {remedy!r}")
    return remedy


def _check_stats(stats):
    if stats not in BN_STATS:
        raise ValueError(f"stats must be one of {BN_STATS}. Expected one of them, got {stats!r}")
    return stats


def _check_positive(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0. Expected > 0, got {value!r}")
    return float(value)


# ----------------------------------------------------------------------------- torch models

class StepBatchNorm(nn.Module):
    """Batch norm of a (B, H) pre-activation at step t, scaled by a learned gain (no shift: the cell has a bias).

    Training: the batch statistics of step t, whatever `stats` is. Two sets of running statistics move towards
    them at once: per step (slot min(t, max_len - 1), Cooijmans et al.) and shared (one slot updated at every
    step, what reusing one nn.BatchNorm1d at every step does). Evaluation uses the set named by `stats`, so
    one trained model can be evaluated both ways.
    """

    def __init__(self, hidden_size, max_len, gamma=0.1, stats="per_step", momentum=0.1, eps=1e-5):
        super().__init__()
        self.stats = _check_stats(stats)
        self.momentum, self.eps = float(momentum), float(eps)
        max_len = _check_int("max_len", max_len, 1)
        self.weight = nn.Parameter(torch.full((hidden_size,), _check_positive("gamma", gamma)))
        self.register_buffer("running_mean", torch.zeros(max_len, hidden_size))  # (max_len, H)
        self.register_buffer("running_var", torch.ones(max_len, hidden_size))    # (max_len, H)
        self.register_buffer("shared_mean", torch.zeros(1, hidden_size))         # (1, H)
        self.register_buffer("shared_var", torch.ones(1, hidden_size))           # (1, H)

    def forward(self, a, t):
        j = min(t, self.running_mean.shape[0] - 1)
        if self.training and a.shape[0] < 2:
            raise ValueError(f"batch norm in training needs a batch of >= 2 sequences. Expected >= 2, got {a.shape[0]}")
        if self.training or self.stats == "per_step":
            mean, var = self.running_mean[j], self.running_var[j]  # row views: F.batch_norm updates them in place
        else:
            mean, var = self.shared_mean[0], self.shared_var[0]
        if self.training:
            with torch.no_grad():  # the shared set follows the same batch statistics, one update per step
                batch_var, batch_mean = torch.var_mean(a, dim=0, unbiased=True)  # unbiased, as stored by torch
                self.shared_mean[0].lerp_(batch_mean, self.momentum)
                self.shared_var[0].lerp_(batch_var, self.momentum)
        return F.batch_norm(a, mean, var, self.weight, None, self.training, self.momentum, self.eps)


class RemedyRNN(nn.Module):
    """One recurrent layer with a remedy and a linear readout of the last state: x (B, T, I) -> y (B,).

    remedy    one of REMEDIES (module docstring)
    gamma     initial gain of the batch norms (remedy "batchnorm"); the layer norm's gain starts at 1
    bn_stats  "per_step" or "shared" running statistics (remedy "batchnorm")
    max_len   number of per-step statistics slots; longer sequences reuse the last slot (Cooijmans et al.)
    forget_bias  added to the LSTM's forget-gate bias (torch's default adds 0; Jozefowicz et al. 2015 use 1)
    """

    def __init__(self, remedy, input_size=2, hidden_size=32, max_len=100, gamma=0.1, bn_stats="per_step",
                 momentum=0.1, forget_bias=0.0):
        super().__init__()
        self.remedy = _check_remedy(remedy)
        I, H = _check_int("input_size", input_size, 1), _check_int("hidden_size", hidden_size, 1)
        self.hidden_size = H
        if remedy == "lstm":
            self.cell = nn.LSTMCell(I, H)
        else:
            nonlinearity = "relu" if remedy in ("relu", "irnn") else "tanh"
            self.cell = nn.RNNCell(I, H, bias=remedy in ("tanh", "relu", "irnn"), nonlinearity=nonlinearity)
        if remedy == "irnn":
            with torch.no_grad():
                self.cell.weight_hh.copy_(torch.eye(H))
                self.cell.bias_ih.zero_()
                self.cell.bias_hh.zero_()
        if remedy == "lstm" and forget_bias:
            with torch.no_grad():
                self.cell.bias_hh[H:2 * H] += float(forget_bias)  # gate order i, f, g, o
        if remedy == "layernorm":
            self.norm = nn.LayerNorm(H)
        if remedy == "batchnorm":
            self.norm_h = StepBatchNorm(H, max_len, gamma, bn_stats, momentum)
            self.norm_x = StepBatchNorm(H, max_len, gamma, bn_stats, momentum)
            self.bias = nn.Parameter(torch.zeros(H))
        self.head = nn.Linear(H, 1)
        if remedy in ("tanh", "relu", "irnn", "lstm"):  # forward() runs torch's fused loop on the cell's weights
            with torch.random.fork_rng(devices=[]):     # its own (unused) init must not move the global RNG
                fused = nn.LSTM(I, H, batch_first=True) if remedy == "lstm" else \
                    nn.RNN(I, H, nonlinearity="tanh" if remedy == "tanh" else "relu", batch_first=True)
            object.__setattr__(self, "_fused", fused)  # not a submodule: it owns no parameters of the model

    def set_bn_stats(self, stats):
        """Choose which running statistics batch norm uses in evaluation: "per_step" or "shared". -> self"""
        _check_stats(stats)
        if self.remedy != "batchnorm":
            raise ValueError(f"set_bn_stats needs remedy 'batchnorm'. Expected 'batchnorm', got {self.remedy!r}")
        self.norm_h.stats = self.norm_x.stats = stats
        return self

    def initial_state(self, batch_size, dtype=None):
        h = torch.zeros(batch_size, self.hidden_size, dtype=dtype or self.head.weight.dtype)
        return (h, h.clone()) if self.remedy == "lstm" else h

    def step(self, x_t, state, t):
        """One step: x_t (B, I), state (B, H) or an LSTM pair -> the next state."""
        if self.remedy in ("tanh", "relu", "irnn", "lstm"):
            return self.cell(x_t, state)  # torch's fused cell: exactly nn.RNN / nn.LSTM's step
        xw, hw = x_t @ self.cell.weight_ih.T, state @ self.cell.weight_hh.T  # (B, H) each
        if self.remedy == "layernorm":
            return torch.tanh(self.norm(xw + hw))
        return torch.tanh(self.norm_h(hw, t) + self.norm_x(xw, t) + self.bias)

    def states(self, x, state0=None):
        """x (B, T, I) -> [s_1, ..., s_T], each (B, H) or an LSTM pair of (B, H); state0 defaults to zeros."""
        if x.ndim != 3 or x.shape[-1] != self.cell.input_size:
            raise ValueError(f"x must be (B, T, I) with I = {self.cell.input_size}. "
                             f"Expected (B, T, {self.cell.input_size}), got {tuple(x.shape)}")
        state = self.initial_state(x.shape[0], x.dtype) if state0 is None else state0
        out = []
        for t in range(x.shape[1]):
            state = self.step(x[:, t], state, t)
            out.append(state)
        return out

    def forward(self, x):
        """x (B, T, I) -> y (B,). Same numbers as states() (tests), 2-3x faster for the torch cores."""
        if self.remedy in ("tanh", "relu", "irnn", "lstm") and x.ndim == 3 and x.shape[-1] == self.cell.input_size:
            weights = {name + "_l0": getattr(self.cell, name) for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
            h_T = torch.func.functional_call(self._fused, weights, (x,))[0][:, -1]  # (B, H)
        else:
            s_T = self.states(x)[-1]
            h_T = s_T[0] if self.remedy == "lstm" else s_T
        return self.head(h_T).squeeze(-1)  # (B,)


def make_model(remedy, hidden_size=32, seed=0, **kwargs):
    """RemedyRNN(remedy, input_size=2, hidden_size, **kwargs) built under torch.manual_seed(seed)."""
    torch.manual_seed(_check_int("seed", seed, 0))
    return RemedyRNN(remedy, input_size=2, hidden_size=hidden_size, **kwargs)


# ----------------------------------------------------------------------------- gradient flow (torch)

def _hidden(state):
    return state[0] if isinstance(state, tuple) else state


def state_grad_norms(model, x, seed=0, directions=None):
    """RMS over the batch of ||dL/ds_k|| for k = 1..T, shape (T,); L = sum_b v_b . h_T^(b), |v_b| = 1.

    directions: the v_b as a (B, H) array (each row is normalised), or None for random ones drawn with seed.
    x (B, T, I) tensor or array. Runs a float64 copy in training mode (batch norm uses batch statistics, as
    in training), so the model itself is not changed. s_k = h_k, or (h_k, c_k) for the LSTM, taken as the
    input of step k + 1: each part is tapped (cloned) there, so dL/dc_k does not also count the path
    c_k -> h_k (h_k is a separate input of step k + 1).
    """
    if not isinstance(model, RemedyRNN):
        raise ValueError(f"model must be a RemedyRNN. Expected RemedyRNN, got {type(model).__name__}")
    m = copy.deepcopy(model).double().train()
    x = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    if x.ndim != 3:
        raise ValueError(f"x must be (B, T, I). Expected 3 dims, got {x.ndim}")
    state, taps = m.initial_state(x.shape[0]), []
    for t in range(x.shape[1]):
        state = m.step(x[:, t], state, t)
        state = tuple(p.clone() for p in state) if isinstance(state, tuple) else state.clone()
        for p in (state if isinstance(state, tuple) else (state,)):
            p.retain_grad()
        taps.append(state)
    if directions is None:
        g = torch.Generator().manual_seed(_check_int("seed", seed, 0))
        v = torch.randn(x.shape[0], m.hidden_size, generator=g, dtype=torch.float64)
    else:
        v = torch.as_tensor(np.asarray(directions), dtype=torch.float64)
        if v.shape != (x.shape[0], m.hidden_size):
            raise ValueError(f"directions must be (B, H). Expected {(x.shape[0], m.hidden_size)}, got {tuple(v.shape)}")
    v = v / v.norm(dim=1, keepdim=True)  # (B, H) one unit vector per sequence
    (v * _hidden(state)).sum().backward()
    norms = []
    for s in taps:
        parts = s if isinstance(s, tuple) else (s,)
        grad = torch.cat([p.grad if p.grad is not None else torch.zeros_like(p) for p in parts], dim=1)
        norms.append(float(grad.pow(2).sum(1).mean().sqrt()))
    return np.array(norms)


def weight_hh_grads_by_step(model, x, y):
    """Split dL/dW_hh into the part each step contributes. -> (G, other_norm)

    x (B, T, I), y (B,); L = mse_loss, the training loss. W_hh is shared by all steps, so
    dL/dW_hh = sum_t G_t with G_t the gradient through step t's use of W_hh alone (G_1 = 0: h_0 = 0).
    G (T, *W_hh.shape) float64 array; other_norm: the L2 norm of the gradients of every other parameter,
    so the total norm that norm clipping uses is sqrt(other_norm**2 + ||G.sum(0)||**2). Runs a float64 copy in
    training mode (batch norm: batch statistics); the model itself is not changed.
    """
    if not isinstance(model, RemedyRNN):
        raise ValueError(f"model must be a RemedyRNN. Expected RemedyRNN, got {type(model).__name__}")
    m = copy.deepcopy(model).double().train()
    x = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(y), dtype=torch.float64)
    if x.ndim != 3 or y.shape != (x.shape[0],):
        raise ValueError(f"x must be (B, T, I) and y (B,). Expected y of shape ({x.shape[0] if x.ndim else '?'},), "
                         f"got x {tuple(x.shape)}, y {tuple(y.shape)}")
    W = m.cell.weight_hh.detach()
    del m.cell.weight_hh  # from here on a plain attribute: one copy of W_hh per step, each a leaf
    copies = [W.clone().requires_grad_() for _ in range(x.shape[1])]
    state = m.initial_state(x.shape[0])
    for t, W_t in enumerate(copies):
        m.cell.weight_hh = W_t
        state = m.step(x[:, t], state, t)
    mse_loss_from_state = F.mse_loss(m.head(_hidden(state)).squeeze(-1), y)
    mse_loss_from_state.backward()
    G = torch.stack([c.grad for c in copies]).numpy()  # (T, H_out, H)
    other = [p.grad for p in m.parameters() if p.grad is not None]
    other_norm = float(torch.sqrt(sum((g * g).sum() for g in other))) if other else 0.0
    return G, other_norm


def set_population_statistics(model, x):
    """Recompute batch norm's inference statistics with the final weights (Ioffe & Szegedy 2015, Alg. 2). -> model

    x (N, T, I) training sequences. Per-step slot t gets step t's mean and unbiased variance over x; the shared
    set gets their average over the steps (what one nn.BatchNorm1d reused at every step converges to with a
    cumulative average, momentum=None). Running averages kept during training lag behind the weights.
    """
    if not isinstance(model, RemedyRNN) or model.remedy != "batchnorm":
        raise ValueError(f"model must be a RemedyRNN with remedy 'batchnorm'. Expected 'batchnorm', "
                         f"got {getattr(model, 'remedy', type(model).__name__)!r}")
    x = torch.as_tensor(np.asarray(x), dtype=model.head.weight.dtype)
    norms, was_training = (model.norm_h, model.norm_x), model.training
    T = min(x.shape[1], model.norm_h.running_mean.shape[0])
    with torch.no_grad():
        momenta = [n.momentum for n in norms]
        for n in norms:
            n.momentum = 1.0  # lerp with weight 1: each slot is replaced by this batch's statistics
        model.train()
        model.states(x)
        for n, momentum in zip(norms, momenta):
            n.momentum = momentum
            n.shared_mean.copy_(n.running_mean[:T].mean(0, keepdim=True))
            n.shared_var.copy_(n.running_var[:T].mean(0, keepdim=True))
    model.train(was_training)
    return model


# ----------------------------------------------------------------------------- inside a trained LSTM

def forget_gates(model, x):
    """The LSTM's forget-gate values f_t at t = 1..T, shape (T, B, H); x (B, T, I). Eval mode, no grad."""
    if not isinstance(model, RemedyRNN) or model.remedy != "lstm":
        raise ValueError(f"model must be a RemedyRNN with remedy 'lstm'. Expected 'lstm', "
                         f"got {getattr(model, 'remedy', type(model).__name__)!r}")
    H, c = model.hidden_size, model.cell
    with torch.no_grad():
        x = torch.as_tensor(np.asarray(x), dtype=c.weight_ih.dtype)
        states = [model.initial_state(x.shape[0], x.dtype)] + model.states(x)[:-1]
        f = [torch.sigmoid(x[:, t] @ c.weight_ih[H:2 * H].T + c.bias_ih[H:2 * H]
                           + s[0] @ c.weight_hh[H:2 * H].T + c.bias_hh[H:2 * H]) for t, s in enumerate(states)]
    return torch.stack(f).numpy()


# ----------------------------------------------------------------------------- training on the adding problem

def adding_batches(T, batch_size, seed=0):
    """batches(step) -> (x (B, T, 2), y (B,)) float32 tensors, a fresh adding-problem batch per call."""
    rng = np.random.default_rng(_check_int("seed", seed, 0))
    T, batch_size = _check_int("T", T, 2), _check_int("batch_size", batch_size, 1)
    return lambda step: tuple(torch.from_numpy(a) for a in tasks.adding_problem(batch_size, T, rng))


def mse_loss(model, x, y):
    """The training loss: mean squared error of the prediction of y (B,)."""
    return F.mse_loss(model(x), y)


def evaluate(model, x, y):
    """Test MSE in evaluation mode (batch norm uses its running statistics: per step or shared), a float."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = float(mse_loss(model, torch.as_tensor(x), torch.as_tensor(y)))
    model.train(was_training)
    return out


# ----------------------------------------------------------------------------- numpy Jacobians (the panel)

INITS = ("default", "orthogonal")


def _check_init(init):
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}. Expected one of them, got {init!r}")
    return init


def init_params(remedy, H=32, input_size=2, weight_scale=1.0, gamma=0.1, forget_bias=0.0, rng=None, gamma_x=None,
                init="default"):
    """Numpy parameters of a core at initialisation, W_hh multiplied by weight_scale. -> dict of float64 arrays.

    init: "default" (torch's) or "orthogonal": each (H, H) block of W_hh replaced by a random orthogonal matrix
    (QR of a Gaussian matrix, drawn from rng after the other parameters; ignored by irnn, whose W_hh is I).
    gamma: the gain γ_h of the recurrent term's batch norm, and of the input term's too unless gamma_x (γ_x) is
    given (batchnorm); forget_bias: added to the LSTM's forget-gate bias.
    Same distributions as RemedyRNN (torch's default U(-1/sqrt(H), 1/sqrt(H))). Keys: the cells layout
    (weight_ih, weight_hh, bias_ih, bias_hh) for tanh/relu/irnn/lstm; weight_ih, weight_hh, ln_weight,
    ln_bias for layernorm; weight_ih, weight_hh, gamma_h, gamma_x, bias for batchnorm.
    """
    _check_remedy(remedy)
    weight_scale = _check_positive("weight_scale", weight_scale)
    rng = np.random.default_rng(0) if rng is None else rng
    p = cells.init_params("lstm" if remedy == "lstm" else "rnn", input_size, H, rng)
    if _check_init(init) == "orthogonal":
        blocks = []
        for _ in range(p["weight_hh"].shape[0] // H):  # one block per gate (LSTM: i, f, g, o)
            q, r = np.linalg.qr(rng.standard_normal((H, H)))
            blocks.append(q * np.sign(np.diag(r)))     # sign fix: Haar-distributed (Mezzadri 2007)
        p["weight_hh"] = np.concatenate(blocks)
    if remedy == "irnn":
        p["weight_hh"], p["bias_ih"], p["bias_hh"] = np.eye(H), np.zeros(H), np.zeros(H)
    p["weight_hh"] = p["weight_hh"] * weight_scale
    if remedy == "lstm":
        p["bias_hh"][H:2 * H] += float(forget_bias)  # gate order i, f, g, o
    if remedy == "layernorm":
        p = {"weight_ih": p["weight_ih"], "weight_hh": p["weight_hh"], "ln_weight": np.ones(H), "ln_bias": np.zeros(H)}
    if remedy == "batchnorm":
        g = _check_positive("gamma", gamma)
        gx = g if gamma_x is None else _check_positive("gamma_x", gamma_x)
        p = {"weight_ih": p["weight_ih"], "weight_hh": p["weight_hh"], "gamma_h": np.full(H, g),
             "gamma_x": np.full(H, gx), "bias": np.zeros(H)}
    return p


def params_from_model(model):
    """The numpy parameters (init_params' keys) of a RemedyRNN, float64 copies."""
    get = lambda t: t.detach().cpu().numpy().astype(np.float64, copy=True)  # noqa: E731
    c = model.cell
    p = {"weight_ih": get(c.weight_ih), "weight_hh": get(c.weight_hh)}
    if model.remedy == "layernorm":
        p.update(ln_weight=get(model.norm.weight), ln_bias=get(model.norm.bias))
    elif model.remedy == "batchnorm":
        p.update(gamma_h=get(model.norm_h.weight), gamma_x=get(model.norm_x.weight), bias=get(model.bias))
    else:
        p.update(bias_ih=get(c.bias_ih), bias_hh=get(c.bias_hh))
    return p


def _bn_jacobians(x, params, eps):
    """x (T, B, I): batch statistics per step, held constant; yield dh_t/dh_{t-1} of sequence 0, t = T..2."""
    W = params["weight_hh"]
    xw = x @ params["weight_ih"].T                                            # (T, B, H)
    nx = (xw - xw.mean(1, keepdims=True)) / np.sqrt(xw.var(1, keepdims=True) + eps)
    h, rows = np.zeros(xw.shape[1:]), []
    for t in range(x.shape[0]):
        ah = h @ W.T                                                          # (B, H) recurrent term
        sd = np.sqrt(ah.var(0) + eps)                                         # (H,) its batch std at step t
        h = np.tanh(params["gamma_h"] * (ah - ah.mean(0)) / sd + params["gamma_x"] * nx[t] + params["bias"])
        rows.append((1.0 - h[0] ** 2) * params["gamma_h"] / sd)               # (H,) row scaling of W
    for t in range(x.shape[0] - 1, 0, -1):
        yield rows[t][:, None] * W


def _lstm_jacobians(x, params):
    """x (T, I): yield (dh_t/dh_{t-1}, dc_t/dh_{t-1}, diag of dh_t/dc_{t-1}, diag of dc_t/dc_{t-1}), t = T..2."""
    W, H = params["weight_hh"], params["weight_hh"].shape[1]
    Wi, Wf, Wg, Wo = W[:H], W[H:2 * H], W[2 * H:3 * H], W[3 * H:]
    xw = x @ params["weight_ih"].T + params["bias_ih"] + params["bias_hh"]  # (T, 4H)
    h, c, cache = np.zeros(H), np.zeros(H), []
    for t in range(x.shape[0]):
        z = xw[t] + W @ h
        i, f, g, o = cells.sigmoid(z[:H]), cells.sigmoid(z[H:2 * H]), np.tanh(z[2 * H:3 * H]), cells.sigmoid(z[3 * H:])
        c_prev, c = c, f * c + i * g
        tc = np.tanh(c)
        h = o * tc
        cache.append((i, f, g, o, c_prev, tc))
    for t in range(x.shape[0] - 1, 0, -1):
        i, f, g, o, c_prev, tc = cache[t]
        dc_dh = ((c_prev * f * (1 - f))[:, None] * Wf + (g * i * (1 - i))[:, None] * Wi
                 + (i * (1 - g * g))[:, None] * Wg)                               # (H, H)
        dh_dc = o * (1 - tc * tc)                                                 # (H,) dh_t/dc_t
        yield dh_dc[:, None] * dc_dh + (tc * o * (1 - o))[:, None] * Wo, dc_dh, dh_dc * f, f


def _rnn_jacobians(remedy, x, params, eps):
    """x (T, I): yield dh_t/dh_{t-1} (H, H), t = T..2, for tanh, relu, irnn and layernorm."""
    W, H = params["weight_hh"], params["weight_hh"].shape[1]
    xw = x @ params["weight_ih"].T + params.get("bias_ih", 0.0) + params.get("bias_hh", 0.0)  # (T, H)
    h, cache = np.zeros(H), []
    for t in range(x.shape[0]):
        a = xw[t] + W @ h
        if remedy == "layernorm":
            s = np.sqrt(a.var() + eps)
            n = (a - a.mean()) / s
            h = np.tanh(params["ln_weight"] * n + params["ln_bias"])
            cache.append((h, n, s))
        else:
            h = np.maximum(a, 0.0) if remedy in ("relu", "irnn") else np.tanh(a)
            cache.append((h, a))
    for t in range(x.shape[0] - 1, 0, -1):
        if remedy == "layernorm":
            h, n, s = cache[t]
            dln = (np.eye(H) - 1.0 / H - np.outer(n, n) / H) / s  # d LN(a) / da, (H, H)
            yield ((1 - h * h) * params["ln_weight"])[:, None] * (dln @ W)
        else:
            h, a = cache[t]
            yield ((a > 0).astype(float) if remedy in ("relu", "irnn") else 1 - h * h)[:, None] * W


def jacobian_log10_norms(remedy, x, params, eps=1e-5):
    """log10(||dh_T/ds_k||_F / sqrt(H)) for k = 1..T, shape (T,); -inf where the product is exactly 0.

    x (T, I) one sequence, or (T, B, I) for batchnorm (statistics of the batch held constant, Jacobian of
    sequence 0). s_k = h_k, or (h_k, c_k) for the LSTM. The product is accumulated from the back,
    renormalised at every step and its scale kept in log10, as in helpers.flow.
    """
    _check_remedy(remedy)
    x = np.asarray(x, dtype=np.float64)
    ndim = 3 if remedy == "batchnorm" else 2
    I = params["weight_ih"].shape[1]
    if x.ndim != ndim or x.shape[-1] != I:
        raise ValueError(f"x must be {'(T, B, I)' if ndim == 3 else '(T, I)'} with I = {I} for {remedy}. "
                         f"Expected {ndim} dims ending in {I}, got {x.shape}")
    if remedy == "batchnorm" and x.shape[1] < 2:
        raise ValueError(f"batchnorm needs a batch for its statistics. Expected B >= 2, got {x.shape[1]}")
    T, H = x.shape[0], params["weight_hh"].shape[1]
    out = np.full(T, -np.inf)
    out[T - 1] = 0.0  # ||dh_T/ds_T||_F / sqrt(H) = ||[I | 0]||_F / sqrt(H) = 1
    if remedy == "batchnorm":
        steps = _bn_jacobians(x, params, eps)
    elif remedy == "lstm":
        steps = _lstm_jacobians(x, params)
    else:
        steps = _rnn_jacobians(remedy, x, params, eps)
    Mh, Mc = np.eye(H) / np.sqrt(H), np.zeros((H, H))  # dh_T/dh_k and dh_T/dc_k over 10**log_scale
    log_scale = 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        for k, J in zip(range(T - 2, -1, -1), steps):
            if remedy == "lstm":  # [Mh Mc] @ [[dh_dh, diag(a)], [dc_dh, diag(f)]]
                dh_dh, dc_dh, a, f = J
                Mh, Mc = Mh @ dh_dh + Mc @ dc_dh, Mh * a + Mc * f
            else:
                Mh = Mh @ J
            s = np.sqrt(np.sum(Mh * Mh) + np.sum(Mc * Mc))
            if not np.isfinite(s):
                out[:k + 1] = np.inf  # overflow: report inf, never a traceback
                break
            if s == 0.0:
                break  # exactly zero from here back (every ReLU unit off): stays -inf
            Mh, Mc = Mh / s, Mc / s
            log_scale += np.log10(s)
            out[k] = log_scale
    return out


def flow_experiment(remedy, T=100, weight_scale=1.0, gamma=0.1, forget_bias=0.0, H=32, batch=32, seed=0,
                    gamma_x=None, init="default"):
    """The panel's computation: gradient flow of one core at initialisation on adding-problem inputs.

    Batch norm: gamma is γ_h (recurrent term), gamma_x is γ_x (input term; None: the same as gamma).
    init: "default" or "orthogonal" W_hh (init_params); weight_scale multiplies either.
    Returns dict distance (T,) = T - k for k = 1..T, log10_norm (T,), rate (decades per step back).
    """
    _check_remedy(remedy)
    T = _check_int("T", T, 2)
    x, _ = tasks.adding_problem(batch if remedy == "batchnorm" else 1, T, seed)  # (B, T, 2)
    x = np.transpose(x, (1, 0, 2)).astype(np.float64)  # (T, B, 2)
    params = init_params(remedy, H, 2, weight_scale, gamma, forget_bias, np.random.default_rng(seed), gamma_x, init)
    log_norm = jacobian_log10_norms(remedy, x if remedy == "batchnorm" else x[:, 0], params)
    return {"distance": np.arange(T - 1, -1, -1), "log10_norm": log_norm, "rate": flow.decay_rate(log_norm)}
