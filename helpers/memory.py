r"""Lesson 01: what an Elman RNN remembers, and how strongly each input still reaches the last state.

    h_t = phi(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh),   t = 1..T    (one W_ih, one W_hh for every step)

With phi = identity the recurrence unrolls into a sum, one term per input:

    h_T = W_hh^T h_0 + sum_{t=1..T} W_hh^(T-t) (W_ih x_t + b_ih + b_hh)

so dh_T/dx_t = W_hh^(T-t) W_ih: how much input t still counts is set by the powers of W_hh, not by its
position alone. `influence_profile` measures ||dh_T/dx_t||_F for any activation and any W_hh; the recall
model and its two measurements (`recall_accuracy`, `output_influence`) are the trained counterpart.

Index convention: arrays are 0-based (x[t - 1] holds x_t); profiles are returned by *steps back*
d = T - t, so entry 0 is the newest input x_T and entry T - 1 the oldest x_1.
"""
import numpy as np
import torch
import torch.nn as nn

from . import cells, flow


def linear_unroll(x, h0, params):
    """The terms of the unrolled linear RNN. x (T, B, I), h0 (B, H) -> terms (T + 1, B, H).

    terms[0] = W_hh^T h0 and terms[t] = W_hh^(T-t) (W_ih x_t + b_ih + b_hh) for t = 1..T (x_t = x[t - 1]);
    terms.sum(0) is h_T of cells.rnn_forward(x, h0, params, "identity").
    """
    I, H = cells._check_params(params, "rnn")
    x = cells._check_input(x, I, 3, "x")
    T, B, _ = x.shape
    h0 = cells._check_state(h0, B, H, "h0")
    W = params["weight_hh"]
    drive = x @ params["weight_ih"].T + params["bias_ih"] + params["bias_hh"]  # (T, B, H) what step t adds
    terms = np.empty((T + 1, B, H))
    carried = h0.copy()  # W_hh^j h0 after j steps
    for t in range(T - 1, -1, -1):  # the newest input is multiplied by W_hh^0, the oldest by W_hh^(T-1)
        terms[t + 1] = drive[t]
        drive[:t] = drive[:t] @ W.T  # every older term gets one more factor of W_hh
        carried = carried @ W.T
    terms[0] = carried
    return terms


def _check_T(T):
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 2:
        raise ValueError(f"T must be an int >= 2. Expected >= 2, got {T!r}")
    return int(T)


def influence_profile(T=50, lambda_1=1.0, nonlinearity="tanh", init="orthogonal", H=32, input_size=4, seed=0):
    """||dh_T/dx_t||_F of a random RNN whose W_hh has largest singular value lambda_1, by steps back.

    W_hh is drawn by flow.recurrent_weights(H, init, lambda_1); W_ih and the biases have torch's default
    init; inputs x_t ~ N(0, 1); h_0 = 0. Returns dict:
      steps_back (T,) 0..T-1; influence (T,) ||dh_T/dx_{T-d}||_F (entry 0 = newest input);
      relative (T,) influence / influence of the newest input (entry 0 is 1; if the newest input has no
      influence at all, relative to the largest one instead); lambda_1, gamma (max |phi'|).
    """
    T = _check_T(T)
    cells.activation(nonlinearity)  # validates the name
    rng = np.random.default_rng(seed)
    params = cells.init_params("rnn", input_size, H, rng)
    params["weight_hh"] = flow.recurrent_weights(H, init, lambda_1, rng)
    x = rng.normal(size=(T, 1, input_size))  # (T, 1, I)
    influence = flow.input_sensitivity("rnn", x, np.zeros((1, H)), params, nonlinearity)[::-1].copy()
    finite = influence[np.isfinite(influence) & (influence > 0)]
    ref = influence[0] if 0 < influence[0] < np.inf else (finite.max() if finite.size else 1.0)
    with np.errstate(over="ignore", invalid="ignore"):
        relative = influence / ref
    return {"steps_back": np.arange(T), "influence": influence, "relative": relative,
            "lambda_1": float(np.linalg.norm(params["weight_hh"], 2)), "gamma": flow.GAMMA[nonlinearity]}


# ----------------------------------------------------------------------------- the trained counterpart

class RecallRNN(nn.Module):
    """nn.RNN + a linear read-out of the last state. x (B, T, K) batch-first -> logits (B, K).

    Only h_T reaches the read-out, so whatever the model recalls must have been carried in the state.
    """

    def __init__(self, n_symbols, hidden_size=32, nonlinearity="tanh"):
        super().__init__()
        self.rnn = nn.RNN(n_symbols, hidden_size, nonlinearity=nonlinearity, batch_first=True)
        self.readout = nn.Linear(hidden_size, n_symbols)

    def forward(self, x):
        _, h_T = self.rnn(x)             # h_T (1, B, H)
        return self.readout(h_T[0])      # (B, K)


def _as_tensor(a, name, ndim, dtype):
    t = torch.as_tensor(a)
    if t.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dims. Expected {ndim}, got {t.ndim} (shape {tuple(t.shape)})")
    return t.to(dtype)


def recall_accuracy(model, x, y):
    """Fraction of sequences whose argmax logit is the target. x (N, T, K), y (N,) -> float in [0, 1]."""
    x = _as_tensor(x, "x", 3, next(model.parameters()).dtype)
    y = _as_tensor(y, "y", 1, torch.int64)
    if len(x) != len(y):
        raise ValueError(f"x and y must hold the same number of sequences. Expected {len(x)}, got {len(y)}")
    with torch.no_grad():
        return float((model(x).argmax(1) == y).double().mean())


def output_influence(model, x):
    """RMS over the batch of ||d logits / d x_t||_F, by steps back. x (N, T, K) -> (T,), entry 0 = newest.

    One backward pass per logit: sequences are independent, so the gradient of the batch sum w.r.t. x[n]
    is sequence n's own gradient.
    """
    x = _as_tensor(x, "x", 3, next(model.parameters()).dtype).detach().clone().requires_grad_(True)
    logits = model(x)  # (N, K)
    sq = torch.zeros(x.shape[1], dtype=torch.float64)  # (T,)
    for c in range(logits.shape[1]):
        (g,) = torch.autograd.grad(logits[:, c].sum(), x, retain_graph=True)  # (N, T, K)
        sq += (g.double() ** 2).sum(dim=(0, 2))
    return (sq / len(x)).sqrt().numpy()[::-1].copy()
