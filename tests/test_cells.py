"""helpers.cells is exactly torch.nn (forward 1e-10, backward 1e-9, float64) and its own finite differences."""
import numpy as np
import pytest
import torch

from helpers import cells
from helpers.gradcheck import numerical_gradient, rel_error

FWD_TOL, BWD_TOL, FD_TOL = 1e-10, 1e-9, 1e-6
TORCH = {"rnn": (torch.nn.RNN, torch.nn.RNNCell), "lstm": (torch.nn.LSTM, torch.nn.LSTMCell),
         "gru": (torch.nn.GRU, torch.nn.GRUCell)}
KINDS_NL = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", None), ("gru", None)]
SHAPES = [(1, 1, 1, 1), (5, 3, 4, 6), (7, 2, 5, 3)]  # (T, B, I, H): the all-ones case included


def make_module(kind, I, H, nl, seed=0, **kw):
    torch.manual_seed(seed)
    extra = {"nonlinearity": nl} if kind == "rnn" else {}
    return TORCH[kind][0](I, H, **extra, **kw).double()


def state0(kind, B, H, rng):
    h = rng.normal(size=(B, H))
    return (h, rng.normal(size=(B, H))) if kind == "lstm" else h


def forward(kind, x, s0, p, nl):
    return cells.rnn_forward(x, s0, p, nl) if kind == "rnn" else cells.FORWARD[kind](x, s0, p)


def max_diff(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


@pytest.mark.parametrize("kind,nl", KINDS_NL)
@pytest.mark.parametrize("T,B,I,H", SHAPES)
def test_matches_torch_forward_and_backward(kind, nl, T, B, I, H):
    rng = np.random.default_rng(1)
    mod = make_module(kind, I, H, nl)
    p = cells.params_from_torch(mod)
    x, s0 = rng.normal(size=(T, B, I)), state0(kind, B, H, rng)
    dhs, dh_T, dc_T = rng.normal(size=(T, B, H)), rng.normal(size=(B, H)), rng.normal(size=(B, H))

    hs, sT, cache = forward(kind, x, s0, p, nl)
    dstate_T = (dh_T, dc_T) if kind == "lstm" else dh_T
    dx, ds0, grads = cells.BACKWARD[kind](dhs, dstate_T, cache)

    xt = torch.tensor(x, requires_grad=True)
    if kind == "lstm":
        h0t, c0t = (torch.tensor(s[None], requires_grad=True) for s in s0)
        out, (hn, cn) = mod(xt, (h0t, c0t))
        loss = (out * torch.tensor(dhs)).sum() + (hn[0] * torch.tensor(dh_T)).sum() + (cn[0] * torch.tensor(dc_T)).sum()
        assert max_diff(sT[1], cn[0].detach()) < FWD_TOL
    else:
        h0t = torch.tensor(s0[None], requires_grad=True)
        out, hn = mod(xt, h0t)
        loss = (out * torch.tensor(dhs)).sum() + (hn[0] * torch.tensor(dh_T)).sum()
    loss.backward()
    assert max_diff(hs, out.detach()) < FWD_TOL
    assert max_diff(cells._hidden(kind, sT), hn[0].detach()) < FWD_TOL
    assert max_diff(dx, xt.grad) < BWD_TOL
    assert max_diff(cells._hidden(kind, ds0), h0t.grad[0]) < BWD_TOL
    if kind == "lstm":
        assert max_diff(ds0[1], c0t.grad[0]) < BWD_TOL
    for key in cells.PARAM_KEYS:
        assert max_diff(grads[key], getattr(mod, key + "_l0").grad) < BWD_TOL, key


@pytest.mark.parametrize("kind,nl", KINDS_NL)
def test_cell_modules_match_step_functions(kind, nl):
    rng = np.random.default_rng(2)
    torch.manual_seed(0)
    extra = {"nonlinearity": nl} if kind == "rnn" else {}
    mod = TORCH[kind][1](4, 5, **extra).double()
    p = cells.params_from_torch(mod)
    x, s = rng.normal(size=(3, 4)), state0(kind, 3, 5, rng)
    if kind == "lstm":
        (h1, c1), _ = cells.lstm_step_forward(x, s, p)
        ht, ct = mod(torch.tensor(x), tuple(torch.tensor(v) for v in s))
        assert max_diff(c1, ct.detach()) < FWD_TOL
    else:
        step = cells.rnn_step_forward if kind == "rnn" else cells.gru_step_forward
        h1, _ = step(x, s, p, nl) if kind == "rnn" else step(x, s, p)
        ht = mod(torch.tensor(x), torch.tensor(s))
    assert max_diff(h1, ht.detach()) < FWD_TOL


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_bidirectional_two_layer_rebuilt_from_single_direction_calls(kind):
    T, B, I, H = 6, 2, 3, 4
    rng = np.random.default_rng(3)
    mod = make_module(kind, I, H, "tanh", num_layers=2, bidirectional=True)
    x = rng.normal(size=(T, B, I))
    zero = (np.zeros((B, H)), np.zeros((B, H))) if kind == "lstm" else np.zeros((B, H))
    layer_in = x
    for layer in range(2):
        fwd, _, _ = forward(kind, layer_in, zero, cells.params_from_torch(mod, layer), "tanh")
        bwd, _, _ = forward(kind, layer_in[::-1], zero, cells.params_from_torch(mod, layer, reverse=True), "tanh")
        layer_in = np.concatenate([fwd, bwd[::-1]], axis=-1)  # (T, B, 2H): the reverse pass reads time backwards
    out = mod(torch.tensor(x))[0].detach().numpy()
    assert max_diff(layer_in, out) < FWD_TOL


@pytest.mark.parametrize("kind,nl", KINDS_NL)
def test_sequence_path_equals_step_functions(kind, nl):
    """The fast path (one input matmul, validation once) equals a loop of the readable step functions."""
    T, B, I, H = 4, 3, 2, 5
    rng = np.random.default_rng(4)
    p = cells.init_params(kind, I, H, rng)
    x, s0, dhs = rng.normal(size=(T, B, I)), state0(kind, B, H, rng), rng.normal(size=(T, B, H))
    hs, _, cache = forward(kind, x, s0, p, nl)
    dx, ds0, grads = cells.BACKWARD[kind](dhs, None, cache)

    step_f = {"rnn": lambda x_t, s: cells.rnn_step_forward(x_t, s, p, nl),
              "lstm": lambda x_t, s: cells.lstm_step_forward(x_t, s, p),
              "gru": lambda x_t, s: cells.gru_step_forward(x_t, s, p)}[kind]
    step_b = {"rnn": cells.rnn_step_backward, "lstm": cells.lstm_step_backward, "gru": cells.gru_step_backward}[kind]
    s, step_caches = s0, []
    for t in range(T):
        s, c = step_f(x[t], s)
        step_caches.append(c)
        assert max_diff(cells._hidden(kind, s), hs[t]) < 1e-14
    ds = (np.zeros((B, H)), np.zeros((B, H))) if kind == "lstm" else np.zeros((B, H))
    step_grads = {k: np.zeros_like(v) for k, v in p.items()}
    for t in reversed(range(T)):
        dx_t, ds, g = step_b(cells._add_dh(kind, ds, dhs[t]), step_caches[t])
        assert max_diff(dx_t, dx[t]) < 1e-12
        for k in g:
            step_grads[k] += g[k]
    assert max_diff(cells._hidden(kind, ds), cells._hidden(kind, ds0)) < 1e-12
    for k in grads:
        assert max_diff(step_grads[k], grads[k]) < 1e-12


@pytest.mark.parametrize("kind,nl", KINDS_NL + [("rnn", "sigmoid"), ("rnn", "identity")])
def test_finite_differences(kind, nl):
    """Relative error < 1e-6 on every parameter, x and the initial state (floor 1e-6: near-zero entries compare absolutely)."""
    T, B, I, H = 4, 2, 3, 3
    rng = np.random.default_rng(5)
    p = cells.init_params(kind, I, H, rng)
    if nl == "relu":  # keep pre-activations away from the kink: positive inputs, positive biases
        p["bias_hh"] += 0.5
    x = rng.normal(size=(T, B, I)) if nl != "relu" else rng.uniform(0.2, 1.0, size=(T, B, I))
    s0 = state0(kind, B, H, rng)
    R, RT = rng.normal(size=(T, B, H)), rng.normal(size=(B, H))

    def loss():  # a random linear read-out of every output and of the final hidden state
        hs, sT, _ = forward(kind, x, s0, p, nl)
        return float(np.sum(hs * R) + np.sum(cells._hidden(kind, sT) * RT))

    hs, sT, cache = forward(kind, x, s0, p, nl)
    if nl == "relu":  # precondition: no pre-activation within reach of the finite-difference step
        assert np.min(np.abs(np.stack([c[1] for c in cache[3]]))) > 1e-4
    dstate_T = (RT, np.zeros((B, H))) if kind == "lstm" else RT
    dx, ds0, grads = cells.BACKWARD[kind](R, dstate_T, cache)

    pairs = [(p[k], grads[k], k) for k in cells.PARAM_KEYS] + [(x, dx, "x")]
    pairs += [(s0[0], ds0[0], "h0"), (s0[1], ds0[1], "c0")] if kind == "lstm" else [(s0, ds0, "h0")]
    for arr, analytic, name in pairs:
        err = rel_error(numerical_gradient(loss, arr), analytic, floor=1e-6)
        assert err < FD_TOL, f"{kind}/{nl} {name}: rel error {err:.2e}"


def test_params_round_trip_and_init_layout():
    for kind, G in cells.GATES.items():
        p = cells.init_params(kind, 3, 5)
        assert p["weight_ih"].shape == (G * 5, 3) and p["weight_hh"].shape == (G * 5, 5)
        assert p["bias_hh"].shape == (G * 5,) and np.all(np.abs(p["weight_hh"]) <= 1 / np.sqrt(5))
        mod = TORCH[kind][0](3, 5).double()
        cells.params_to_torch(p, mod)
        back = cells.params_from_torch(mod)
        assert all(np.array_equal(back[k], p[k]) for k in p)
    no_bias = cells.params_from_torch(torch.nn.GRU(2, 3, bias=False))
    assert np.all(no_bias["bias_ih"] == 0) and no_bias["bias_ih"].shape == (9,)


# ----------------------------------------------------------------------------- bad input

P_RNN, P_LSTM = cells.init_params("rnn", 3, 4), cells.init_params("lstm", 3, 4)
X, H0 = np.zeros((5, 2, 3)), np.zeros((2, 4))

BAD = [
    ("wrong ndim", lambda: cells.rnn_forward(np.zeros((5, 3)), H0, P_RNN), "must have 3 dims"),
    ("wrong input size", lambda: cells.rnn_forward(np.zeros((5, 2, 7)), H0, P_RNN), "Expected 3, got 7"),
    ("wrong state shape", lambda: cells.rnn_forward(X, np.zeros((2, 5)), P_RNN), "Expected (2, 4), got (2, 5)"),
    ("lstm state not a pair", lambda: cells.lstm_forward(X, H0, P_LSTM), "must be a pair (h, c)"),
    ("lstm state wrong c", lambda: cells.lstm_forward(X, (H0, np.zeros(3)), P_LSTM), "Expected (2, 4), got (3,)"),
    ("params of another kind", lambda: cells.rnn_forward(X, H0, P_LSTM), "params of another kind"),
    ("missing key", lambda: cells.gru_forward(X, H0, {"weight_ih": 0}), "missing"),
    ("unknown nonlinearity", lambda: cells.rnn_forward(X, H0, P_RNN, "softsign"), "got 'softsign'"),
    ("non-finite x", lambda: cells.rnn_forward(np.full((5, 2, 3), np.nan), H0, P_RNN), "must be finite"),
    ("step ndim", lambda: cells.rnn_step_forward(X, H0, P_RNN), "must have 2 dims"),
    ("bad dhs", lambda: cells.rnn_backward(np.zeros((1, 1, 1)), None, cells.rnn_forward(X, H0, P_RNN)[2]),
     "Expected (5, 2, 4), got (1, 1, 1)"),
    ("unknown kind", lambda: cells.init_params("transformer", 3, 4), "got 'transformer'"),
    ("bad size", lambda: cells.init_params("rnn", 0, 4), "got 0"),
    ("bad layer", lambda: cells.params_from_torch(torch.nn.LSTM(3, 4), layer=1), "got 1"),
    ("reverse of unidirectional", lambda: cells.params_from_torch(torch.nn.GRU(3, 4), reverse=True), "bidirectional"),
    ("not a recurrent module", lambda: cells.params_from_torch(torch.nn.Linear(3, 4)), "got Linear"),
]


@pytest.mark.parametrize("name,call,message", BAD, ids=[b[0] for b in BAD])
def test_bad_input_raises_clear_value_error(name, call, message):
    with pytest.raises(ValueError, match="Expected") as e:
        call()
    assert message in str(e.value)
