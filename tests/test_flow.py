"""helpers.flow against torch autograd, the Pascanu bound, and safe extremes."""
import numpy as np
import pytest
import torch

from helpers import cells, flow

NLS = ["tanh", "relu", "sigmoid", "identity"]
TORCH_PHI = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid, "identity": lambda a: a}


def torch_state_jacobians(x, h0, p, nl):
    """dh_T/dh_k for every k by autograd (torch.func.jacrev through the unrolled recurrence)."""
    P = {k: torch.tensor(v) for k, v in p.items()}
    T = x.shape[0]
    step = lambda h, t: TORCH_PHI[nl](torch.tensor(x[t, 0]) @ P["weight_ih"].T + P["bias_ih"]  # noqa: E731
                                      + h @ P["weight_hh"].T + P["bias_hh"])

    def h_T_from(h, k):  # run steps k+1..T starting from h_k
        for t in range(k, T):
            h = step(h, t)
        return h

    hs = [torch.tensor(h0[0])]
    for t in range(T):
        hs.append(step(hs[-1], t))
    return [torch.func.jacrev(lambda h, k=k: h_T_from(h, k))(hs[k]).numpy() for k in range(T + 1)]


@pytest.mark.parametrize("nl", NLS)
@pytest.mark.parametrize("ord", ["fro", 2])
def test_state_jacobian_norms_match_autograd(nl, ord):
    T, I, H = 12, 3, 5
    rng = np.random.default_rng(0)
    p = cells.init_params("rnn", I, H, rng)
    p["weight_hh"] *= 2.0
    x, h0 = rng.normal(size=(T, 1, I)), rng.normal(size=(1, H))
    ours = flow.state_jacobian_norms(x, h0, p, nl, ord)
    ref = [np.linalg.norm(J, ord) for J in torch_state_jacobians(x, h0, p, nl)]
    assert ours.shape == (T + 1,)
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-300)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_input_sensitivity_matches_autograd(kind):
    T, I, H = 9, 3, 4
    rng = np.random.default_rng(1)
    torch.manual_seed(0)
    mod = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind](I, H).double()
    p = cells.params_from_torch(mod)
    x = rng.normal(size=(T, 1, I))
    s0 = (rng.normal(size=(1, H)), rng.normal(size=(1, H))) if kind == "lstm" else rng.normal(size=(1, H))
    ours = flow.input_sensitivity(kind, x, s0, p)

    st = tuple(torch.tensor(s[None]) for s in s0) if kind == "lstm" else torch.tensor(s0[None])

    def h_T(xx):
        out = mod(xx, st)[1]
        return (out[0] if kind == "lstm" else out)[0, 0]

    J = torch.func.jacrev(h_T)(torch.tensor(x)).detach().numpy()  # (H, T, 1, I)
    ref = np.sqrt((J ** 2).sum(axis=(0, 2, 3)))
    np.testing.assert_allclose(ours, ref, rtol=1e-10)


def test_pascanu_bound_holds_on_random_matrices():
    rng = np.random.default_rng(2)
    for trial in range(40):
        nl = NLS[trial % 4]
        r = flow.decay_experiment(T=30, nonlinearity=nl, lambda_1=rng.uniform(0.3, 3.0), H=8,
                                  init=flow.INITS[trial % 4], ord=2, seed=trial)
        assert np.all(r["log10_norm"] <= r["log10_bound"] + 1e-9), (trial, nl)


def test_log_scale_survives_beyond_float_range():
    """At T = 1000 the norms leave float64's range; the log10 values stay exact and finite."""
    lin = flow.decay_experiment(T=1000, nonlinearity="identity", lambda_1=2.0, init="orthogonal", H=8)
    # an orthogonal W scaled by 2 with identity activation: every singular value of the product is 2^(T-k)
    np.testing.assert_allclose(lin["log10_norm"], lin["log10_bound"], atol=1e-8)
    assert lin["log10_norm"][0] == pytest.approx(1000 * np.log10(2.0))
    sig = flow.decay_experiment(T=1000, nonlinearity="sigmoid", lambda_1=1.0, H=8)
    assert np.all(np.isfinite(sig["log10_norm"])) and sig["log10_norm"][0] < -400
    with np.errstate(all="raise"):  # converting back reports 0 / inf explicitly, without a warning
        assert flow.state_jacobian_norms(np.zeros((600, 1, 1)), np.zeros((1, 2)),
                                         {"weight_ih": np.zeros((2, 1)), "weight_hh": 4 * np.eye(2),
                                          "bias_ih": np.zeros(2), "bias_hh": np.zeros(2)}, "identity")[0] == np.inf


def test_dead_relu_gives_exact_zero_not_a_crash():
    p = {"weight_ih": np.zeros((3, 1)), "weight_hh": np.eye(3), "bias_ih": -np.ones(3), "bias_hh": np.zeros(3)}
    out = flow.state_jacobian_log10_norms(np.zeros((5, 1, 1)), np.zeros((1, 3)), p, "relu")
    assert np.all(np.isneginf(out[:5])) and out[5] == pytest.approx(np.log10(np.sqrt(3)))


def test_decay_rate_reads_the_slope():
    assert flow.decay_rate(np.arange(11.0) * 0.5) == pytest.approx(-0.5)


@pytest.mark.parametrize("init", flow.INITS)
def test_recurrent_weights_hit_the_target_lambda(init):
    W = flow.recurrent_weights(16, init, 1.7, np.random.default_rng(0))
    assert np.linalg.norm(W, 2) == pytest.approx(1.7)


@pytest.mark.parametrize("call,message", [
    (lambda: flow.state_jacobian_norms(np.zeros((3, 2, 1)), np.zeros((1, 2)), cells.init_params("rnn", 1, 2)),
     "Expected batch 1, got 2"),
    (lambda: flow.state_jacobian_norms(np.zeros((3, 1, 1)), np.zeros((1, 2)), cells.init_params("rnn", 1, 2), ord=1),
     "got 1"),
    (lambda: flow.input_sensitivity("lstm", np.zeros((3, 1, 1)), np.zeros((1, 2)), cells.init_params("lstm", 1, 2)),
     "pair (h, c)"),
    (lambda: flow.recurrent_weights(4, "he"), "got 'he'"),
    (lambda: flow.recurrent_weights(4, "orthogonal", 0.0), "got 0.0"),
])
def test_bad_input(call, message):
    with pytest.raises(ValueError, match="Expected") as e:
        call()
    assert message in str(e.value)


def test_influence_experiment_uses_influence_params():
    x = np.random.default_rng(0).normal(size=(20, 1, 4))
    h0 = np.zeros((1, 8))
    got = flow.influence_experiment(T=20, weight_scale=1.5, forget_bias=2.0, H=8)
    for kind in ("rnn", "lstm", "gru"):
        p = flow.influence_params(kind, 1.5, 2.0, H=8)
        want = flow.input_sensitivity(kind, x, (h0, h0) if kind == "lstm" else h0, p)
        np.testing.assert_array_equal(got[kind], want)
    base, lstm = flow.influence_params("lstm", H=8), flow.influence_params("lstm", forget_bias=2.0, H=8)
    np.testing.assert_allclose(lstm["bias_hh"] - base["bias_hh"], np.r_[np.zeros(8), 2 * np.ones(8), np.zeros(16)], atol=1e-15)
