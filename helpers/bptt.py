r"""Backpropagation through time (BPTT) for the Elman RNN, taken apart step by step.

Model, in PyTorch's layout (batch rows, as helpers.cells):
    a_t = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh,      h_t = phi(a_t),      t = 0..T-1
Loss: any L = sum_t L_t(h_t). `dhs[t] = ∂⁺L/∂h_t` (T, B, H) is the *immediate* gradient: the direct path
from h_t into the loss, holding h_{t+1}, ... fixed (for a readout loss, (y_hat_t - y_t) V).

Local (∂⁺, "immediate", h_{t-1} held fixed) versus total (d, through every path) derivatives:
    delta_t  = dL/da_t          = phi'(a_t) * (dhs[t] + delta_{t+1} W_hh),   delta_T = 0
    dL/dW_hh = sum_t delta_t^T h_{t-1}      one term per step: a shared weight's gradient is a sum
    wrong    = sum_t (phi'(a_t) * dhs[t])^T h_{t-1}   the "local only" gradient: dh_{t-1}/dW treated as 0

The error split by distance: E[d, s] = dL_{s+d}/da_s (the loss d steps later, carried back to step s);
delta_s = sum_d E[d, s].
Truncated BPTT with window k keeps only some of these terms:
    "sliding":  d < k          the window covers the loss's own step and k - 1 earlier ones
                               (k = 1: zero steps through W_hh, the local-only gradient; k = T: full BPTT)
    "chunked":  s // k == (s + d) // k   h.detach() every k steps, what a PyTorch TBPTT loop computes: a loss's
                               window runs from the start of its chunk to its own step (1 to k steps)
Either way the result is backprop with an earlier state treated as a constant: a biased direction that is the
gradient of no fixed loss (its Jacobian is not symmetric), while the forward pass still uses the whole history.
(Williams & Peng 1990; Williams & Zipser 1995.)
"""
import numpy as np

from . import cells, flow
from .tasks import _check_int

KEYS = cells.PARAM_KEYS
MODES = ("sliding", "chunked")


# ----------------------------------------------------------------------------- validation

def _check_sequence(x, h0, params, dhs, nonlinearity):
    """Validate one BPTT call; return float64 x (T, B, I), h0 (B, H), dhs (T, B, H)."""
    I, H = cells._check_params(params, "rnn")
    cells.activation(nonlinearity)
    x = cells._check_input(x, I, 3, "x")
    T, B, _ = x.shape
    h0 = cells._check_state(h0, B, H, "h0")
    dhs = np.asarray(dhs, dtype=np.float64)
    if dhs.shape != (T, B, H):
        raise ValueError(f"dhs must be (T, B, H) like the hidden states. Expected {(T, B, H)}, got {dhs.shape}")
    return x, h0, dhs


def _forward(x, h0, params, nonlinearity):
    """-> h_prev (T, B, H) = h_{t-1} for each t, a (T, B, H) pre-activations, dphi (T, B, H) = phi'(a)."""
    hs, _, cache = cells.rnn_forward(x, h0, params, nonlinearity)
    a = np.stack([c[1] for c in cache[3]])  # (T, B, H)
    h_prev = np.concatenate([h0[None], hs[:-1]])  # (T, B, H)
    dphi = cells.activation(nonlinearity)[1](a, hs)
    return h_prev, a, dphi


# ----------------------------------------------------------------------------- a loss to differentiate

def readout_loss(hs, weight, bias, y):
    """L = 1/2 sum_{t,b} ||h_t V^T + c - y_t||^2 for a linear readout V (O, H), c (O,).

    hs (T, B, H), y (T, B, O) -> (loss float, dhs (T, B, H) = ∂⁺L/∂h_t, grads {"weight": (O, H), "bias": (O,)}).
    """
    hs = np.asarray(hs, dtype=np.float64)
    weight, bias, y = (np.asarray(v, dtype=np.float64) for v in (weight, bias, y))
    if hs.ndim != 3:
        raise ValueError(f"hs must be (T, B, H). Expected 3 dims, got {hs.ndim} (shape {hs.shape})")
    T, B, H = hs.shape
    if weight.ndim != 2 or weight.shape[1] != H:
        raise ValueError(f"weight must be (O, H) with H = {H}. Expected (O, {H}), got {weight.shape}")
    O = weight.shape[0]
    if bias.shape != (O,):
        raise ValueError(f"bias must be (O,). Expected {(O,)}, got {bias.shape}")
    if y.shape != (T, B, O):
        raise ValueError(f"y must be (T, B, O). Expected {(T, B, O)}, got {y.shape}")
    err = hs @ weight.T + bias - y  # (T, B, O)
    grads = {"weight": np.tensordot(err, hs, axes=([0, 1], [0, 1])), "bias": err.sum((0, 1))}
    return 0.5 * float(np.sum(err * err)), err @ weight, grads


# ----------------------------------------------------------------------------- the gradient, three ways

def grads_from_delta(delta, x, h_prev):
    """Parameter gradients from pre-activation errors: dW_hh = sum_t delta_t^T h_{t-1}, etc.

    delta (T, B, H), x (T, B, I), h_prev (T, B, H) -> dict with weight_ih (H, I), weight_hh (H, H), bias_ih, bias_hh (H,).
    """
    delta, x, h_prev = (np.asarray(v, dtype=np.float64) for v in (delta, x, h_prev))
    if delta.ndim != 3 or h_prev.shape != delta.shape or x.shape[:2] != delta.shape[:2]:
        raise ValueError(f"delta and h_prev must be (T, B, H) and x (T, B, I). Expected matching (T, B), "
                         f"got delta {delta.shape}, x {x.shape}, h_prev {h_prev.shape}")
    db = delta.sum((0, 1))
    return {"weight_ih": np.tensordot(delta, x, axes=([0, 1], [0, 1])),
            "weight_hh": np.tensordot(delta, h_prev, axes=([0, 1], [0, 1])), "bias_ih": db, "bias_hh": db.copy()}


def step_contributions(x, h0, params, dhs, nonlinearity="tanh"):
    """Full BPTT, one step at a time with cells.rnn_step_backward; every step's share kept apart.

    x (T, B, I), h0 (B, H), dhs (T, B, H) -> dict: "delta" (T, B, H) = dL/da_t (total), and for each
    parameter key its per-step contributions with a leading T axis, e.g. "weight_hh" (T, H, H) =
    delta_t^T h_{t-1}. Summing over axis 0 gives the gradient of the shared parameter.
    """
    x, h0, dhs = _check_sequence(x, h0, params, dhs, nonlinearity)
    T, B, _ = x.shape
    caches, h = [], h0
    for t in range(T):
        h, cache = cells.rnn_step_forward(x[t], h, params, nonlinearity)
        caches.append(cache)
    out = {"delta": np.empty_like(dhs)}
    out.update({k: np.empty((T,) + np.shape(params[k])) for k in KEYS})
    dh = np.zeros_like(h0)  # dL/dh_t through h_{t+1}, ... (zero after the last step)
    for t in reversed(range(T)):
        dh_total = dhs[t] + dh  # total dL/dh_t = immediate + through the future
        _, dh, g = cells.rnn_step_backward(dh_total, caches[t])
        out["delta"][t] = _delta_of(dh_total, caches[t])
        for k in KEYS:
            out[k][t] = g[k]
    return out


def _delta_of(dh_total, cache):
    """dL/da_t = dL/dh_t * phi'(a_t), from a step cache (B, H)."""
    _, _, _, (_, a, h_next, _, nonlinearity) = cache
    return dh_total * cells.activation(nonlinearity)[1](a, h_next)


def local_gradient(x, h0, params, dhs, nonlinearity="tanh"):
    """The "local only" gradient: sum_t (phi'(a_t) * ∂⁺L/∂h_t)^T [h_{t-1}; x_t; 1], i.e. each step's
    immediate derivative with h_{t-1} treated as a constant. Wrong whenever T > 1 (equals sliding truncation k = 1).

    x (T, B, I), h0 (B, H), dhs (T, B, H) -> grads dict like params.
    """
    x, h0, dhs = _check_sequence(x, h0, params, dhs, nonlinearity)
    h_prev, _, dphi = _forward(x, h0, params, nonlinearity)
    return grads_from_delta(dhs * dphi, x, h_prev)


def rtrl_weight_hh_grad(x, h0, params, dhs, nonlinearity="tanh", total=True):
    """dL/dW_hh by forward accumulation of the sensitivity P_t = dh_t/dW_hh (real-time recurrent learning):

        P_t[b, i, j, k] = phi'(a_t)[b, i] * (1[i = j] h_{t-1}[b, k] + sum_m W_hh[i, m] P_{t-1}[b, m, j, k])
        dL/dW_hh        = sum_t sum_{b, i} dhs[t, b, i] P_t[b, i, j, k]

    The first term is the immediate ∂⁺h_t/∂W_hh, the second the path through h_{t-1}. total=False drops the
    second term: the "local only" derivation. Memory O(B H^3), independent of T.
    x (T, B, I), h0 (B, H), dhs (T, B, H) -> (H, H).
    """
    x, h0, dhs = _check_sequence(x, h0, params, dhs, nonlinearity)
    h_prev, _, dphi = _forward(x, h0, params, nonlinearity)
    T, B, H = dhs.shape
    W = params["weight_hh"]
    eye = np.eye(H)
    P = np.zeros((B, H, H, H))  # dh_{-1}/dW = 0: h0 does not depend on W_hh
    grad = np.zeros((H, H))
    for t in range(T):
        immediate = eye[None, :, :, None] * h_prev[t][:, None, None, :]  # (B, H, H, H)
        through_past = np.einsum("im,bmjk->bijk", W, P) if total else 0.0
        P = dphi[t][:, :, None, None] * (immediate + through_past)
        grad += np.einsum("bi,bijk->jk", dhs[t], P)
    return grad


# ----------------------------------------------------------------------------- the error by distance, truncation

def error_by_distance(x, h0, params, dhs, nonlinearity="tanh"):
    """E[d, s] = dL_{s+d}/da_s: the part of delta_s that comes from the loss d steps later (0 where s + d >= T).

    x (T, B, I), h0 (B, H), dhs (T, B, H) -> (E (T, T, B, H), h_prev (T, B, H)); delta = E.sum(0).
    T vectorised matmuls: all loss terms travel back one step together.
    """
    x, h0, dhs = _check_sequence(x, h0, params, dhs, nonlinearity)
    h_prev, _, dphi = _forward(x, h0, params, nonlinearity)
    T = x.shape[0]
    W = params["weight_hh"]
    E = np.zeros((T,) + dhs.shape)
    E[0] = dhs * dphi
    for d in range(1, T):
        E[d, :T - d] = (E[d - 1, 1:T - d + 1] @ W) * dphi[:T - d]  # dL_{s+d}/da_s = (dL_{s+d}/da_{s+1} W_hh) * phi'(a_s)
    return E, h_prev


def window_mask(T, k, mode="sliding"):
    """(T, T) bool, M[d, s] = True where truncated BPTT with window k keeps E[d, s]."""
    T = _check_int("T", T, 1)
    k = _check_int("k", k, 1, T)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}. Expected one of them, got {mode!r}")
    d, s = np.arange(T)[:, None], np.arange(T)[None, :]
    inside = s + d < T
    keep = d < k if mode == "sliding" else (s // k) == ((s + d) // k)
    return inside & keep


def truncated_gradient(x, h0, params, dhs, k, mode="sliding", nonlinearity="tanh"):
    """Truncated BPTT with window k ("sliding": each loss term's window is its own step and k - 1 earlier ones;
    "chunked": h.detach() every k steps). k = T gives the full gradient. x (T, B, I), h0 (B, H), dhs (T, B, H) -> grads dict."""
    x, h0, dhs = _check_sequence(x, h0, params, dhs, nonlinearity)
    mask = window_mask(x.shape[0], k, mode)
    E, h_prev = error_by_distance(x, h0, params, dhs, nonlinearity)
    return grads_from_delta(np.einsum("ds,dsbh->sbh", mask.astype(float), E), x, h_prev)


def cosine(a, b):
    """Cosine similarity of two arrays of the same shape, flattened; 1.0 if both are zero, 0.0 if one is."""
    a, b = np.ravel(np.asarray(a, dtype=np.float64)), np.ravel(np.asarray(b, dtype=np.float64))
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same size. Expected {a.shape}, got {b.shape}")
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0.0 or nb == 0.0:
        return 1.0 if na == nb else 0.0
    return float(a @ b / (na * nb))


def stored_floats(cache):
    """Floats an rnn_forward cache keeps for the backward pass (x, every h and a; the shared weights excluded)."""
    seen, total = set(), 0
    kind, x, params, steps = cache
    shared = {id(v) for v in params.values()}
    for arr in [x] + [a for step in steps for a in step if isinstance(a, np.ndarray)]:
        if id(arr) not in seen and id(arr) not in shared:
            seen.add(id(arr))
            total += arr.size
    return total


# ----------------------------------------------------------------------------- the panel's experiment

def truncation_setup(T=100, lambda_1=1.0, H=32, input_size=4, output_size=2, seed=0):
    """One random tanh RNN and one sequence for the truncation experiment -> (x (T, 1, I), h0 (1, H), params, dhs (T, 1, H)).

    W_hh orthogonal with ||W_hh||_2 = lambda_1 (lambda_1 < 1 contracts, = 1 is the borderline case, > 1 expands), torch's
    default init elsewhere; a loss at every step: linear readout to random targets, 1/2 squared error.
    """
    T = _check_int("T", T, 1)
    rng = np.random.default_rng(seed)
    params = cells.init_params("rnn", input_size, H, rng)
    params["weight_hh"] = flow.recurrent_weights(H, "orthogonal", lambda_1, rng)
    x = rng.normal(size=(T, 1, input_size))
    V = rng.uniform(-1 / np.sqrt(H), 1 / np.sqrt(H), size=(output_size, H))
    y = rng.normal(size=(T, 1, output_size))
    h0 = np.tanh(rng.normal(size=(1, H)))  # mid-stream: a state carried in from earlier (h0 = 0 would zero step 0's term)
    hs, _, _ = cells.rnn_forward(x, h0, params)
    _, dhs, _ = readout_loss(hs, V, np.zeros(output_size), y)
    return x, h0, params, dhs


def truncation_experiment(T=100, lambda_1=1.0, k=10, H=32, input_size=4, output_size=2, seed=0):
    """Truncated (sliding window) vs full BPTT on truncation_setup(...)'s RNN and sequence.

    Returns dict (all for dL/dW_hh):
        window (T,)              1..T
        cosine (T,)              cos(truncated with window w, full) for every window w
        distance_norm (T,)       ||G_d||_F, G_d = sum_s E[d, s]^T h_{s-1}: the gradient from losses d steps ahead
        step_norm_full (T,)      ||delta_s^T h_{s-1}||_F, each step's contribution to the full gradient
        step_norm_truncated (T,) the same with window k
        step_norm_dropped (T,)   ||(delta_s - delta_s^(k))^T h_{s-1}||_F: what the window leaves out (0 for s >= T - k)
        cos_k                    cosine at window k
    """
    T = _check_int("T", T, 1)
    k = _check_int("k", k, 1, T)
    x, h0, params, dhs = truncation_setup(T, lambda_1, H, input_size, output_size, seed)
    E, h_prev = error_by_distance(x, h0, params, dhs)
    hp = h_prev.reshape(T, H)  # one sequence
    # G_d = sum_s E[d, s]^T h_{s-1}: (T, H, H) as T batched (H, T) @ (T, H) products
    G = np.matmul(E[:, :, 0, :].transpose(0, 2, 1), hp)
    partial = np.cumsum(G, axis=0)  # truncated gradient for window w = partial[w - 1]
    full = partial[-1]
    nf = np.linalg.norm(full)
    norms = np.sqrt(np.sum(partial * partial, axis=(1, 2)))
    den = norms * nf
    cos = np.divide(np.sum(partial * full, axis=(1, 2)), den, out=np.ones(T), where=den > 0)
    hn = np.linalg.norm(hp, axis=1)  # ||h_{s-1}||: ||delta_s^T h_{s-1}||_F = ||delta_s|| ||h_{s-1}|| for one sequence
    return {"window": np.arange(1, T + 1), "cosine": cos,
            "distance_norm": np.sqrt(np.sum(G * G, axis=(1, 2))),
            "step_norm_full": np.linalg.norm(E.sum(0)[:, 0], axis=1) * hn,
            "step_norm_truncated": np.linalg.norm(E[:k].sum(0)[:, 0], axis=1) * hn,
            "step_norm_dropped": np.linalg.norm(E[k:].sum(0)[:, 0], axis=1) * hn,
            "cos_k": float(cos[k - 1])}


# ----------------------------------------------------------------------------- truncation in torch

def detach_every(rnn, x, k, h0=None):
    """Run a torch nn.RNN/LSTM/GRU over x in chunks of k steps, cutting the graph between chunks
    (h.detach(), or (h.detach(), c.detach()) for an LSTM): the forward values are unchanged, a loss's
    backward stops at the chunk boundary. This is truncated BPTT as a PyTorch training loop writes it
    (the "chunked" mode above). x (T, B, I), or (B, T, I) if rnn.batch_first -> (output like rnn(x)[0], h_n).
    """
    import torch
    k = _check_int("k", k, 1)
    if not isinstance(x, torch.Tensor) or x.ndim != 3:
        raise ValueError(f"x must be a 3-dim torch.Tensor. Expected (T, B, I) or (B, T, I), got "
                         f"{type(x).__name__}{tuple(x.shape) if isinstance(x, torch.Tensor) else ''}")
    cells._kind_of_module(rnn)  # validates the module type
    time_dim = 1 if rnn.batch_first else 0
    outs, h = [], h0
    for start in range(0, x.shape[time_dim], k):
        if start > 0:  # cut between chunks; a given h0 keeps its gradient
            h = tuple(v.detach() for v in h) if isinstance(h, tuple) else h.detach()
        out, h = rnn(x.narrow(time_dim, start, min(k, x.shape[time_dim] - start)), h)
        outs.append(out)
    return torch.cat(outs, dim=time_dim), h
