r"""Numpy RNN, LSTM and GRU cells with hand-written backward passes, in PyTorch's layout.

Notation (the notebooks use the same): x_t (B, I) input at step t, h_t (B, H) hidden state,
W_ih (G*H, I), W_hh (G*H, H), b_ih, b_hh (G*H,), with G = 1 (rnn), 4 (lstm), 3 (gru).
Every kind first forms the input projection  xw_t = x_t W_ih^T + b_ih  (B, G*H).

    rnn :  a_t = xw_t + h_{t-1} W_hh^T + b_hh,       h_t = phi(a_t)
    lstm:  [i|f|g|o] = xw_t + h_{t-1} W_hh^T + b_hh
           i, f, o = sigmoid(.),  g = tanh(.)
           c_t = f * c_{t-1} + i * g,                 h_t = o * tanh(c_t)
    gru :  [r|z] = sigmoid(xw_t[:2H] + h_{t-1} W_hh[:2H]^T + b_hh[:2H])
           n = tanh(xw_t[2H:] + r * (h_{t-1} W_hn^T + b_hn))
           h_t = (1 - z) * n + z * h_{t-1}

These are exactly torch.nn.RNN / LSTM / GRU (tests assert 1e-10 forward, 1e-9 backward in float64).
Sequences are time-major, x (T, B, I), like torch's default.

Layout of the code, as in CS231n's rnn_layers.py: `*_step_forward / *_step_backward` are the readable
reference; `*_forward / *_backward` run the same per-step core after validating once and projecting all
inputs in one matmul (the tests prove the two paths equal).
"""
import numpy as np

GATES = {"rnn": 1, "lstm": 4, "gru": 3}
PARAM_KEYS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def sigmoid(a):
    """Logistic function as (1 + tanh(a/2)) / 2: no overflow for any a, and ~10x faster than exp forms."""
    y = np.tanh(np.multiply(a, 0.5))
    y += 1.0
    y *= 0.5
    return y


# name -> (phi(a), phi'(a) written through (a, phi(a)) so backward reuses the forward value)
ACTIVATIONS = {
    "tanh": (np.tanh, lambda a, y: 1.0 - y * y),
    "relu": (lambda a: np.maximum(a, 0.0), lambda a, y: (a > 0).astype(a.dtype)),
    "sigmoid": (sigmoid, lambda a, y: y * (1.0 - y)),
    "identity": (lambda a: a, lambda a, y: np.ones_like(a)),
}


def activation(name):
    """Return (phi, dphi) for an RNN nonlinearity; dphi(a, phi(a)) is the elementwise derivative."""
    if name not in ACTIVATIONS:
        raise ValueError(f"nonlinearity must be one of {sorted(ACTIVATIONS)}. Expected one of them, got {name!r}")
    return ACTIVATIONS[name]


# ----------------------------------------------------------------------------- parameters

def init_params(kind, input_size, hidden_size, rng=None):
    """torch's default init: every tensor ~ U(-1/sqrt(H), 1/sqrt(H)). Returns float64 params."""
    G = _gates(kind)
    for name, v in (("input_size", input_size), ("hidden_size", hidden_size)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive int. Expected >= 1, got {v!r}")
    rng = np.random.default_rng(0) if rng is None else rng
    k = 1.0 / np.sqrt(hidden_size)
    shapes = {"weight_ih": (G * hidden_size, input_size), "weight_hh": (G * hidden_size, hidden_size),
              "bias_ih": (G * hidden_size,), "bias_hh": (G * hidden_size,)}
    return {name: rng.uniform(-k, k, size=shape) for name, shape in shapes.items()}


def _kind_of_module(module):
    import torch.nn as nn
    for kind, types in (("lstm", (nn.LSTM, nn.LSTMCell)), ("gru", (nn.GRU, nn.GRUCell)),
                        ("rnn", (nn.RNN, nn.RNNCell))):
        if isinstance(module, types):
            return kind
    raise ValueError(f"module must be nn.RNN/LSTM/GRU or their Cell. Expected one of them, got {type(module).__name__}")


def _torch_names(module, layer, reverse):
    """Attribute names of one layer/direction: 'weight_ih_l1_reverse' for modules, 'weight_ih' for cells."""
    import torch.nn as nn
    if isinstance(module, nn.RNNCellBase):
        if layer != 0 or reverse:
            raise ValueError(f"a Cell has one layer and one direction. Expected layer=0, reverse=False, got {layer}, {reverse}")
        return {k: k for k in PARAM_KEYS}
    if getattr(module, "proj_size", 0):
        raise ValueError(f"proj_size is not supported. Expected 0, got {module.proj_size}")
    if not 0 <= layer < module.num_layers:
        raise ValueError(f"layer must be in [0, {module.num_layers}). Expected 0..{module.num_layers - 1}, got {layer}")
    if reverse and not module.bidirectional:
        raise ValueError("reverse=True needs a bidirectional module. Expected bidirectional=True, got False")
    suffix = f"_l{layer}" + ("_reverse" if reverse else "")
    return {k: k + suffix for k in PARAM_KEYS}


def params_from_torch(module, layer=0, reverse=False):
    """Copy one layer/direction of a torch recurrent module into a float64 params dict (bias=False -> zeros)."""
    _kind_of_module(module)
    names = _torch_names(module, layer, reverse)
    w_ih = getattr(module, names["weight_ih"])
    params = {}
    for key, attr in names.items():
        t = getattr(module, attr, None)
        params[key] = (np.zeros(w_ih.shape[0]) if t is None
                       else t.detach().cpu().numpy().astype(np.float64, copy=True))
    return params


def params_to_torch(params, module, layer=0, reverse=False):
    """Copy params into one layer/direction of a torch recurrent module, in place."""
    import torch
    kind = _kind_of_module(module)
    names = _torch_names(module, layer, reverse)
    _check_params(params, kind)
    with torch.no_grad():
        for key, attr in names.items():
            t = getattr(module, attr, None)
            if t is None:
                continue
            if tuple(t.shape) != params[key].shape:
                raise ValueError(f"{attr}.shape mismatch. Expected {tuple(t.shape)}, got {params[key].shape}")
            t.copy_(torch.as_tensor(params[key], dtype=t.dtype))


# ----------------------------------------------------------------------------- validation

def _gates(kind):
    if kind not in GATES:
        raise ValueError(f"kind must be one of {sorted(GATES)}. Expected one of them, got {kind!r}")
    return GATES[kind]


def _check_params(params, kind):
    """Return (I, H) after checking keys and shapes against the kind's layout."""
    G = _gates(kind)
    if not isinstance(params, dict):
        raise ValueError(f"params must be a dict with keys {PARAM_KEYS}. Expected dict, got {type(params).__name__}")
    missing = [k for k in PARAM_KEYS if k not in params]
    if missing:
        raise ValueError(f"params is missing {missing}. Expected keys {list(PARAM_KEYS)}, got {sorted(params)}")
    w_hh = np.asarray(params["weight_hh"])
    if w_hh.ndim != 2 or w_hh.shape[0] != G * w_hh.shape[1]:
        raise ValueError(f"weight_hh of a {kind} must be ({G}*H, H). Expected first dim {G}x the second, "
                         f"got {w_hh.shape} (params of another kind?)")
    H = w_hh.shape[1]
    w_ih = np.asarray(params["weight_ih"])
    if w_ih.ndim != 2 or w_ih.shape[0] != G * H:
        raise ValueError(f"weight_ih of a {kind} must be ({G * H}, I). Expected ({G * H}, I), got {w_ih.shape}")
    for key in ("bias_ih", "bias_hh"):
        if np.shape(params[key]) != (G * H,):
            raise ValueError(f"{key} of a {kind} must be ({G * H},). Expected ({G * H},), got {np.shape(params[key])}")
    return w_ih.shape[1], H


def _check_input(x, input_size, ndim, name):
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dims. Expected {ndim}, got {x.ndim} (shape {x.shape})")
    if x.shape[-1] != input_size:
        raise ValueError(f"{name}.size(-1) must be equal to input_size. Expected {input_size}, got {x.shape[-1]}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must be finite. Expected finite values, got {np.sum(~np.isfinite(x))} non-finite")
    return x


def _check_state(h, B, H, name):
    h = np.asarray(h, dtype=np.float64)
    if h.shape != (B, H):
        raise ValueError(f"{name} must be (B, H). Expected {(B, H)}, got {h.shape}")
    return h


def _check_lstm_state(state, B, H, name="state"):
    if not isinstance(state, (tuple, list)) or len(state) != 2:
        got = type(state).__name__ + (f" of length {len(state)}" if isinstance(state, (tuple, list)) else "")
        raise ValueError(f"an LSTM {name} must be a pair (h, c). Expected a 2-tuple, got {got}")
    return _check_state(state[0], B, H, name + "[0] (h)"), _check_state(state[1], B, H, name + "[1] (c)")


def _validate(kind, x, state, params, nonlinearity, x_ndim):
    """Validate one call; return (x, state) as float64 arrays."""
    I, H = _check_params(params, kind)
    if kind == "rnn":
        activation(nonlinearity)
    x = _check_input(x, I, x_ndim, "x" if x_ndim == 3 else "x_t")
    B = x.shape[-2]
    if kind == "lstm":
        return x, _check_lstm_state(state, B, H)
    return x, _check_state(state, B, H, "h")


# ----------------------------------------------------------------------------- per-step cores
# A core takes the input projection xw (B, G*H) and the state; its backward returns d(xw), the state
# gradient, and the recurrent grads. The x-part (W_ih, b_ih, dx) is shared by all kinds.

def _rnn_core_forward(xw, h, params, nonlinearity):
    phi, _ = activation(nonlinearity)
    a = xw + h @ params["weight_hh"].T + params["bias_hh"]  # (B, H)
    h_next = phi(a)
    return h_next, (h, a, h_next, params["weight_hh"], nonlinearity)


def _rnn_core_backward(dh_next, cache):
    h, a, h_next, w_hh, nonlinearity = cache
    da = dh_next * activation(nonlinearity)[1](a, h_next)  # (B, H)
    return da, da @ w_hh, da.T @ h, da.sum(0)


def _lstm_core_forward(xw, state, params, nonlinearity=None):
    h, c = state
    H = h.shape[1]
    z = xw + h @ params["weight_hh"].T + params["bias_hh"]  # (B, 4H)
    i, f, g, o = sigmoid(z[:, :H]), sigmoid(z[:, H:2 * H]), np.tanh(z[:, 2 * H:3 * H]), sigmoid(z[:, 3 * H:])
    c_next = f * c + i * g
    tc = np.tanh(c_next)
    h_next = o * tc
    return (h_next, c_next), (h, c, i, f, g, o, tc, params["weight_hh"])


def _lstm_core_backward(dstate_next, cache):
    dh_next, dc_next = dstate_next
    h, c, i, f, g, o, tc, w_hh = cache
    do = dh_next * tc
    dc = dc_next + dh_next * o * (1.0 - tc * tc)  # total derivative of c_t: direct path + through h_t
    di, df, dg = dc * g, dc * c, dc * i
    dz = np.concatenate([di * i * (1 - i), df * f * (1 - f), dg * (1 - g * g), do * o * (1 - o)], axis=1)
    return dz, (dz @ w_hh, dc * f), dz.T @ h, dz.sum(0)


def _gru_core_forward(xw, h, params, nonlinearity=None):
    H = h.shape[1]
    hw = h @ params["weight_hh"].T + params["bias_hh"]  # (B, 3H): [W_hr h + b_hr | W_hz h + b_hz | W_hn h + b_hn]
    r = sigmoid(xw[:, :H] + hw[:, :H])
    z = sigmoid(xw[:, H:2 * H] + hw[:, H:2 * H])
    n = np.tanh(xw[:, 2 * H:] + r * hw[:, 2 * H:])
    h_next = (1.0 - z) * n + z * h
    return h_next, (h, r, z, n, hw[:, 2 * H:], params["weight_hh"])


def _gru_core_backward(dh_next, cache):
    h, r, z, n, hn, w_hh = cache
    dn = dh_next * (1.0 - z) * (1.0 - n * n)          # d(pre-activation of n)
    dz = dh_next * (h - n) * z * (1.0 - z)            # d(pre-activation of z)
    dr = dn * hn * r * (1.0 - r)                      # d(pre-activation of r)
    dxw = np.concatenate([dr, dz, dn], axis=1)        # (B, 3H)
    dhw = np.concatenate([dr, dz, dn * r], axis=1)    # the n-part of h's projection is gated by r
    return dxw, dhw @ w_hh + dh_next * z, dhw.T @ h, dhw.sum(0)


_CORES = {"rnn": (_rnn_core_forward, _rnn_core_backward),
          "lstm": (_lstm_core_forward, _lstm_core_backward),
          "gru": (_gru_core_forward, _gru_core_backward)}


def _hidden(kind, state):
    return state[0] if kind == "lstm" else state


def _add_dh(kind, dstate, dh):
    return (dstate[0] + dh, dstate[1]) if kind == "lstm" else dstate + dh


# ----------------------------------------------------------------------------- generic step / sequence

def _step_forward(kind, x_t, state, params, nonlinearity):
    x_t, state = _validate(kind, x_t, state, params, nonlinearity, x_ndim=2)
    xw = x_t @ params["weight_ih"].T + params["bias_ih"]  # (B, G*H)
    state_next, core_cache = _CORES[kind][0](xw, state, params, nonlinearity)
    return state_next, (kind, x_t, params["weight_ih"], core_cache)


def _step_backward(dstate_next, cache):
    kind, x_t, w_ih, core_cache = cache
    dxw, dstate, dw_hh, db_hh = _CORES[kind][1](dstate_next, core_cache)
    grads = {"weight_ih": dxw.T @ x_t, "weight_hh": dw_hh, "bias_ih": dxw.sum(0), "bias_hh": db_hh}
    return dxw @ w_ih, dstate, grads


def _forward(kind, x, state0, params, nonlinearity):
    x, state = _validate(kind, x, state0, params, nonlinearity, x_ndim=3)
    T, B, _ = x.shape
    H = params["weight_hh"].shape[1]
    xw = x @ params["weight_ih"].T + params["bias_ih"]  # (T, B, G*H): all inputs in one matmul
    core = _CORES[kind][0]
    hs, caches = np.empty((T, B, H)), []
    for t in range(T):
        state, c = core(xw[t], state, params, nonlinearity)
        hs[t] = _hidden(kind, state)
        caches.append(c)
    return hs, state, (kind, x, params, caches)


def _backward(dhs, dstate_T, cache):
    kind, x, params, caches = cache
    T, B, _ = x.shape
    H = params["weight_hh"].shape[1]
    dhs = np.asarray(dhs, dtype=np.float64)
    if dhs.shape != (T, B, H):
        raise ValueError(f"dhs must be (T, B, H). Expected {(T, B, H)}, got {dhs.shape}")
    if kind == "lstm":
        dstate = (np.zeros((B, H)), np.zeros((B, H))) if dstate_T is None else _check_lstm_state(dstate_T, B, H, "dstate_T")
    else:
        dstate = np.zeros((B, H)) if dstate_T is None else _check_state(dstate_T, B, H, "dh_T")
    backward = _CORES[kind][1]
    dxw = np.empty((T, B, params["weight_hh"].shape[0]))
    dw_hh, db_hh = np.zeros_like(params["weight_hh"]), np.zeros(params["weight_hh"].shape[0])
    for t in reversed(range(T)):
        dxw[t], dstate, gw, gb = backward(_add_dh(kind, dstate, dhs[t]), caches[t])
        dw_hh += gw
        db_hh += gb
    grads = {"weight_ih": np.tensordot(dxw, x, axes=([0, 1], [0, 1])), "weight_hh": dw_hh,
             "bias_ih": dxw.sum((0, 1)), "bias_hh": db_hh}
    return dxw @ params["weight_ih"], dstate, grads


# ----------------------------------------------------------------------------- public API

def rnn_step_forward(x_t, h, params, nonlinearity="tanh"):
    """One Elman step. x_t (B, I), h (B, H) -> (h_next (B, H), cache)."""
    return _step_forward("rnn", x_t, h, params, nonlinearity)


def rnn_step_backward(dh_next, cache):
    """dh_next (B, H) -> (dx_t (B, I), dh (B, H), grads like params)."""
    return _step_backward(np.asarray(dh_next, dtype=np.float64), cache)


def rnn_forward(x, h0, params, nonlinearity="tanh"):
    """x (T, B, I), h0 (B, H) -> (hs (T, B, H), h_T (B, H), cache)."""
    return _forward("rnn", x, h0, params, nonlinearity)


def rnn_backward(dhs, dh_T, cache):
    """dhs (T, B, H) upstream grads of hs, dh_T (B, H) or None -> (dx (T, B, I), dh0 (B, H), grads)."""
    return _backward(dhs, dh_T, cache)


def lstm_step_forward(x_t, state, params):
    """One LSTM step. x_t (B, I), state (h, c) each (B, H) -> ((h_next, c_next), cache)."""
    return _step_forward("lstm", x_t, state, params, None)


def lstm_step_backward(dstate_next, cache):
    """(dh_next, dc_next) each (B, H) -> (dx_t (B, I), (dh, dc), grads)."""
    return _step_backward(tuple(np.asarray(d, dtype=np.float64) for d in dstate_next), cache)


def lstm_forward(x, state0, params):
    """x (T, B, I), state0 (h0, c0) each (B, H) -> (hs (T, B, H), (h_T, c_T), cache)."""
    return _forward("lstm", x, state0, params, None)


def lstm_backward(dhs, dstate_T, cache):
    """dhs (T, B, H), dstate_T (dh_T, dc_T) or None -> (dx (T, B, I), (dh0, dc0), grads)."""
    return _backward(dhs, dstate_T, cache)


def gru_step_forward(x_t, h, params):
    """One GRU step, torch.nn.GRU's equations. x_t (B, I), h (B, H) -> (h_next (B, H), cache)."""
    return _step_forward("gru", x_t, h, params, None)


def gru_step_backward(dh_next, cache):
    """dh_next (B, H) -> (dx_t (B, I), dh (B, H), grads)."""
    return _step_backward(np.asarray(dh_next, dtype=np.float64), cache)


def gru_forward(x, h0, params):
    """x (T, B, I), h0 (B, H) -> (hs (T, B, H), h_T (B, H), cache)."""
    return _forward("gru", x, h0, params, None)


def gru_backward(dhs, dh_T, cache):
    """dhs (T, B, H), dh_T (B, H) or None -> (dx (T, B, I), dh0 (B, H), grads)."""
    return _backward(dhs, dh_T, cache)


FORWARD = {"rnn": rnn_forward, "lstm": lstm_forward, "gru": gru_forward}
BACKWARD = {"rnn": rnn_backward, "lstm": lstm_backward, "gru": gru_backward}
