r"""Gradient-flow measurements: how much does h_T still depend on h_k and on x_k?

For the Elman RNN  h_t = phi(a_t),  a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh,

    dh_T/dh_k = prod_{t=T..k+1} diag(phi'(a_t)) W_hh                       (H, H)
    ||dh_T/dh_k||_2 <= (gamma * lambda_1)^(T-k),   gamma = max|phi'|, lambda_1 = ||W_hh||_2

(Pascanu, Mikolov & Bengio 2013, §2.1). gamma = 1 for tanh, relu and identity, 1/4 for sigmoid.

The Jacobian product is accumulated once from the back (T matmuls, not T backward passes) and renormalised
at every step, its scale kept as a logarithm: norms far below 1e-308 or above 1e308 are still measured
exactly in log10, and reported as 0 / inf only when converted back to floats.
"""
import numpy as np

from . import cells

GAMMA = {"tanh": 1.0, "relu": 1.0, "identity": 1.0, "sigmoid": 0.25}
INITS = ("torch default", "orthogonal", "identity", "xavier")


def _check_one_sequence(x, h0, params):
    I, H = cells._check_params(params, "rnn")
    x = cells._check_input(x, I, 3, "x")
    if x.shape[1] != 1:
        raise ValueError(f"x must hold one sequence, (T, 1, I). Expected batch 1, got {x.shape[1]}")
    return x, cells._check_state(h0, 1, H, "h0")


def state_jacobian_log10_norms(x, h0, params, nonlinearity="tanh", ord="fro"):
    """log10 ||dh_T/dh_k|| for k = 0..T, shape (T+1,); -inf where the product is exactly zero.

    x (T, 1, I), h0 (1, H); ord "fro" or 2 (spectral).
    """
    if ord not in ("fro", 2):
        raise ValueError(f"ord must be 'fro' or 2. Expected one of them, got {ord!r}")
    x, h0 = _check_one_sequence(x, h0, params)
    _, dphi = cells.activation(nonlinearity)
    with np.errstate(over="ignore", invalid="ignore"):
        hs, _, cache = cells.rnn_forward(x, h0, params, nonlinearity)
    T, H = x.shape[0], h0.shape[1]
    W = params["weight_hh"]
    out = np.full(T + 1, -np.inf)
    out[T] = np.log10(np.sqrt(H) if ord == "fro" else 1.0)
    M, log_scale = np.eye(H), 0.0  # dh_T/dh_t = 10**log_scale * M, with ||M||_F = 1 after each step
    normalised = []
    for t in range(T - 1, -1, -1):  # cache[3][t] holds step t+1's (h_prev, a, h_next, ...)
        _, a, h_next, _, _ = cache[3][t]
        with np.errstate(invalid="ignore"):
            d = dphi(a, h_next)[0]  # (H,)
        M = (M * d) @ W  # M diag(phi'(a)) W_hh
        s = np.linalg.norm(M)
        if not np.isfinite(s):
            out[:t + 1] = np.inf  # the forward pass itself overflowed: report inf, never a traceback
            break
        if s == 0.0:
            break  # exactly zero from here back (e.g. every ReLU unit off): stays -inf
        M /= s
        log_scale += np.log10(s)
        out[t] = log_scale
        normalised.append(M)
    if ord == 2 and normalised:
        spec = np.linalg.svd(np.stack(normalised), compute_uv=False)[:, 0]  # ||M||_2 of each unit-F matrix
        k = len(normalised)
        out[T - k:T] += np.log10(spec)[::-1]
    return out


def state_jacobian_norms(x, h0, params, nonlinearity="tanh", ord="fro"):
    """||dh_T/dh_k|| for k = 0..T, shape (T+1,); entry T is the identity's norm. Underflow -> 0, overflow -> inf."""
    with np.errstate(over="ignore", under="ignore"):
        return 10.0 ** state_jacobian_log10_norms(x, h0, params, nonlinearity, ord)


def input_sensitivity(kind, x, state0, params, nonlinearity="tanh"):
    """||dh_T/dx_k||_F for k = 0..T-1, shape (T,). x (T, 1, I); state0 (1, H), or (h0, c0) for an LSTM.

    One backward pass: the sequence is replicated H times in the batch and sample b receives the upstream
    gradient e_b, so dx[k, b] is row b of dh_T/dx_k.
    """
    I, H = cells._check_params(params, kind)
    x = cells._check_input(x, I, 3, "x")
    if x.shape[1] != 1:
        raise ValueError(f"x must hold one sequence, (T, 1, I). Expected batch 1, got {x.shape[1]}")
    rep = lambda s: np.repeat(cells._check_state(s, 1, H, "state0"), H, axis=0)  # noqa: E731
    s0 = tuple(rep(s) for s in cells._check_lstm_state(state0, 1, H)) if kind == "lstm" else rep(state0)
    xb = np.repeat(x, H, axis=1)  # (T, H, I)
    with np.errstate(over="ignore", invalid="ignore"):
        if kind == "rnn":
            hs, _, cache = cells.rnn_forward(xb, s0, params, nonlinearity)
        else:
            hs, _, cache = cells.FORWARD[kind](xb, s0, params)
        eye = np.eye(H)
        dstate_T = (eye, np.zeros((H, H))) if kind == "lstm" else eye
        dx, _, _ = cells.BACKWARD[kind](np.zeros_like(hs), dstate_T, cache)
        norms = np.sqrt(np.sum(dx * dx, axis=(1, 2)))
    return np.where(np.isfinite(norms), norms, np.inf)


# ----------------------------------------------------------------------------- building experiments

def recurrent_weights(H, init="orthogonal", lambda_1=1.0, rng=None):
    """W_hh (H, H) drawn by `init` and rescaled so that its largest singular value is lambda_1."""
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}. Expected one of them, got {init!r}")
    if not lambda_1 > 0:
        raise ValueError(f"lambda_1 must be > 0. Expected a positive float, got {lambda_1!r}")
    rng = np.random.default_rng(0) if rng is None else rng
    if init == "identity":
        return lambda_1 * np.eye(H)
    if init == "orthogonal":
        W, _ = np.linalg.qr(rng.normal(size=(H, H)))
    elif init == "xavier":
        W = rng.normal(0.0, np.sqrt(1.0 / H), size=(H, H))
    else:
        W = rng.uniform(-1 / np.sqrt(H), 1 / np.sqrt(H), size=(H, H))
    return W * (lambda_1 / np.linalg.norm(W, 2))


def pascanu_log10_bound(W_hh, nonlinearity, T):
    """log10 of (gamma * lambda_1)^(T-k) for k = 0..T, shape (T+1,)."""
    cells.activation(nonlinearity)  # validates the name
    gamma = GAMMA[nonlinearity]
    lam = np.linalg.norm(W_hh, 2)
    distance = np.arange(T, -1, -1)
    return distance * np.log10(gamma * lam) if lam > 0 else np.where(distance == 0, 0.0, -np.inf)


def decay_rate(log10_norms):
    """Least-squares slope of log10 ||dh_T/dh_k|| per step back in time (negative = vanishing), finite entries only."""
    y = np.asarray(log10_norms)[::-1]  # index = distance T - k
    d = np.arange(y.size)
    ok = np.isfinite(y)
    if ok.sum() < 2:
        return -np.inf if np.isneginf(y[1:]).all() else np.inf
    return float(np.polyfit(d[ok], y[ok], 1)[0])


def decay_experiment(T=100, nonlinearity="tanh", lambda_1=1.0, H=32, init="orthogonal", ord=2,
                     input_size=4, seed=0):
    """The gradient-decay panel's computation: a random tanh/sigmoid/relu/identity RNN with biases and inputs.

    Returns dict with distance (T+1,), log10_norm (T+1,), log10_bound (T+1,), weight_hh (H, H), lambda_1, gamma,
    rate.
    """
    rng = np.random.default_rng(seed)
    params = cells.init_params("rnn", input_size, H, rng)
    params["weight_hh"] = recurrent_weights(H, init, lambda_1, rng)
    x = rng.normal(size=(T, 1, input_size))
    log_norm = state_jacobian_log10_norms(x, np.zeros((1, H)), params, nonlinearity, ord)
    return {"distance": np.arange(T, -1, -1), "log10_norm": log_norm, "weight_hh": params["weight_hh"],
            "log10_bound": pascanu_log10_bound(params["weight_hh"], nonlinearity, T),
            "lambda_1": float(np.linalg.norm(params["weight_hh"], 2)), "gamma": GAMMA[nonlinearity],
            "rate": decay_rate(log_norm)}


def influence_params(kind, weight_scale=1.0, forget_bias=0.0, H=32, input_size=4, seed=0):
    """The cell of influence_experiment: torch's default init (seeded), recurrent weights multiplied by
    weight_scale, forget_bias added to an LSTM's forget-gate bias (Jozefowicz et al. 2015 recommend 1)."""
    if not weight_scale > 0:
        raise ValueError(f"weight_scale must be > 0. Expected a positive float, got {weight_scale!r}")
    params = cells.init_params(kind, input_size, H, np.random.default_rng(seed))
    params["weight_hh"] = params["weight_hh"] * weight_scale
    if kind == "lstm":
        params["bias_hh"][H:2 * H] += forget_bias  # gate order i, f, g, o
    return params


def influence_experiment(T=100, weight_scale=1.0, forget_bias=0.0, H=32, input_size=4, seed=0):
    """The input-influence panel's computation: ||dh_T/dx_k||_F for an RNN, LSTM and GRU (influence_params)
    on the same inputs. Returns dict kind -> (T,) array, entry k for input x_k (k = 0 is the oldest).
    """
    x = np.random.default_rng(seed).normal(size=(T, 1, input_size))
    h0 = np.zeros((1, H))
    return {kind: input_sensitivity(kind, x, (h0, h0) if kind == "lstm" else h0,
                                    influence_params(kind, weight_scale, forget_bias, H, input_size, seed))
            for kind in ("rnn", "lstm", "gru")}
