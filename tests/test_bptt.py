"""helpers.bptt against torch autograd (float64): per-step contributions, the local-only mistake, RTRL,
truncated BPTT (sliding and chunked), the truncation experiment, and input validation."""
import numpy as np
import pytest
import torch

from helpers import bptt, cells
from helpers.gradcheck import numerical_gradient, rel_error

TOL = 1e-9


def setup(T=7, B=3, I=3, H=4, O=2, nl="tanh", seed=0):
    """A torch nn.RNN + readout, its numpy params, a sequence and the readout loss's immediate gradients."""
    torch.manual_seed(seed)
    rnn = torch.nn.RNN(I, H, nonlinearity=nl).double()
    lin = torch.nn.Linear(H, O).double()
    rng = np.random.default_rng(seed)
    x, y, h0 = rng.normal(size=(T, B, I)), rng.normal(size=(T, B, O)), rng.normal(size=(B, H))
    p = cells.params_from_torch(rnn)
    hs, _, _ = cells.rnn_forward(x, h0, p, nl)
    V, c = lin.weight.detach().numpy().copy(), lin.bias.detach().numpy().copy()
    loss, dhs, gout = bptt.readout_loss(hs, V, c, y)
    return rnn, lin, p, x, y, h0, dhs, loss, gout


def torch_loss(rnn, lin, x, y, h0, k=None):
    out, _ = rnn(torch.tensor(x), torch.tensor(h0[None])) if k is None else \
        bptt.detach_every(rnn, torch.tensor(x), k, torch.tensor(h0[None]))
    return 0.5 * ((lin(out) - torch.tensor(y)) ** 2).sum()


def torch_grads(rnn, lin, x, y, h0, k=None):
    rnn.zero_grad(), lin.zero_grad()
    loss = torch_loss(rnn, lin, x, y, h0, k)
    loss.backward()
    return loss.item(), {key: getattr(rnn, key + "_l0").grad.numpy().copy() for key in cells.PARAM_KEYS}


def max_diff(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def test_readout_loss_matches_torch():
    rnn, lin, p, x, y, h0, dhs, loss, gout = setup()
    ref, _ = torch_grads(rnn, lin, x, y, h0)
    assert abs(loss - ref) < 1e-10
    assert max_diff(gout["weight"], lin.weight.grad) < TOL and max_diff(gout["bias"], lin.bias.grad) < TOL


@pytest.mark.parametrize("nl", ["tanh", "relu"])
@pytest.mark.parametrize("T,B", [(1, 1), (7, 3), (12, 1)])
def test_step_contributions_sum_to_autograd(nl, T, B):
    rnn, lin, p, x, y, h0, dhs, _, _ = setup(T=T, B=B, nl=nl)
    _, ref = torch_grads(rnn, lin, x, y, h0)
    sc = bptt.step_contributions(x, h0, p, dhs, nl)
    for key in cells.PARAM_KEYS:
        assert sc[key].shape == (T,) + p[key].shape
        assert max_diff(sc[key].sum(0), ref[key]) < TOL, key
    # each step's W_hh contribution is delta_t^T h_{t-1}
    hs, _, _ = cells.rnn_forward(x, h0, p, nl)
    h_prev = np.concatenate([h0[None], hs[:-1]])
    assert max_diff(sc["weight_hh"], np.einsum("tbi,tbj->tij", sc["delta"], h_prev)) < 1e-12


def test_delta_is_the_total_derivative_of_the_loss_wrt_a_t():
    rnn, lin, p, x, y, h0, dhs, _, _ = setup()
    P = {k: torch.tensor(v, requires_grad=True) for k, v in p.items()}
    h, pre = torch.tensor(h0), []
    for t in range(x.shape[0]):
        a = torch.tensor(x[t]) @ P["weight_ih"].T + P["bias_ih"] + h @ P["weight_hh"].T + P["bias_hh"]
        a.retain_grad()
        pre.append(a)
        h = torch.tanh(a)
    hs = torch.stack([torch.tanh(a) for a in pre])
    (0.5 * ((lin(hs) - torch.tensor(y)) ** 2).sum()).backward()
    delta = bptt.step_contributions(x, h0, p, dhs)["delta"]
    assert max_diff(delta, torch.stack([a.grad for a in pre])) < TOL


def test_contributions_match_finite_differences():
    rnn, lin, p, x, y, h0, dhs, _, _ = setup(T=5, B=2, I=2, H=3)
    V, c = lin.weight.detach().numpy(), lin.bias.detach().numpy()
    f = lambda: bptt.readout_loss(cells.rnn_forward(x, h0, p)[0], V, c, y)[0]  # noqa: E731
    num = numerical_gradient(f, p["weight_hh"])
    assert rel_error(bptt.step_contributions(x, h0, p, dhs)["weight_hh"].sum(0), num) < 1e-6


def test_local_only_gradient_is_wrong_and_equals_window_one_and_rtrl_without_the_past():
    rnn, lin, p, x, y, h0, dhs, _, _ = setup()
    _, ref = torch_grads(rnn, lin, x, y, h0)
    local = bptt.local_gradient(x, h0, p, dhs)
    rel = np.linalg.norm(local["weight_hh"] - ref["weight_hh"]) / np.linalg.norm(ref["weight_hh"])
    assert rel > 0.05
    for mode in bptt.MODES:
        k1 = bptt.truncated_gradient(x, h0, p, dhs, 1, mode)
        assert all(max_diff(k1[key], local[key]) < 1e-12 for key in cells.PARAM_KEYS)
    assert max_diff(bptt.rtrl_weight_hh_grad(x, h0, p, dhs, total=False), local["weight_hh"]) < 1e-12


def test_local_only_is_exact_for_one_step():
    rnn, lin, p, x, y, h0, dhs, _, _ = setup(T=1)
    _, ref = torch_grads(rnn, lin, x, y, h0)
    assert max_diff(bptt.local_gradient(x, h0, p, dhs)["weight_hh"], ref["weight_hh"]) < TOL


@pytest.mark.parametrize("nl", ["tanh", "relu", "sigmoid"])
def test_rtrl_matches_bptt(nl):
    rnn, lin, p, x, y, h0, dhs, _, _ = setup(nl="tanh")
    hs, _, _ = cells.rnn_forward(x, h0, p, nl)
    _, dhs, _ = bptt.readout_loss(hs, lin.weight.detach().numpy(), lin.bias.detach().numpy(), y)
    full = bptt.step_contributions(x, h0, p, dhs, nl)["weight_hh"].sum(0)
    assert max_diff(bptt.rtrl_weight_hh_grad(x, h0, p, dhs, nl), full) < TOL


def test_error_by_distance_sums_to_delta_and_is_zero_past_the_end():
    rnn, lin, p, x, y, h0, dhs, _, _ = setup()
    E, h_prev = bptt.error_by_distance(x, h0, p, dhs)
    T = x.shape[0]
    assert E.shape == (T, T) + dhs.shape[1:]
    assert max_diff(E.sum(0), bptt.step_contributions(x, h0, p, dhs)["delta"]) < 1e-12
    for d in range(T):
        assert np.all(E[d, T - d:] == 0.0)


@pytest.mark.parametrize("k", [1, 2, 3, 7])
def test_chunked_truncation_is_detach_every_k_in_torch(k):
    rnn, lin, p, x, y, h0, dhs, _, _ = setup(T=7)
    loss, ref = torch_grads(rnn, lin, x, y, h0, k=k)
    assert abs(loss - torch_loss(rnn, lin, x, y, h0).item()) < 1e-10  # the forward is unchanged
    ours = bptt.truncated_gradient(x, h0, p, dhs, k, "chunked")
    for key in cells.PARAM_KEYS:
        assert max_diff(ours[key], ref[key]) < TOL, (k, key)


@pytest.mark.parametrize("k", [1, 2, 3, 7])
def test_sliding_truncation_backpropagates_each_loss_term_k_steps(k):
    rnn, lin, p, x, y, h0, dhs, _, _ = setup(T=7)
    T = x.shape[0]
    with torch.no_grad():
        hs_all, _ = rnn(torch.tensor(x), torch.tensor(h0[None]))
    hs_all = torch.cat([torch.tensor(h0[None]), hs_all])  # hs_all[t] = h_{t-1}
    rnn.zero_grad(), lin.zero_grad()
    for t in range(T):  # loss term t, graph cut k steps back
        start = max(0, t - k + 1)
        out, _ = rnn(torch.tensor(x[start:t + 1]), hs_all[start][None].clone())
        (0.5 * ((lin(out[-1]) - torch.tensor(y[t])) ** 2).sum()).backward()
    ours = bptt.truncated_gradient(x, h0, p, dhs, k, "sliding")
    for key in cells.PARAM_KEYS:
        assert max_diff(ours[key], getattr(rnn, key + "_l0").grad) < TOL, (k, key)


def test_window_mask():
    m = bptt.window_mask(6, 2, "sliding")
    assert m.sum() == 6 + 5 and not m[2].any()
    c = bptt.window_mask(6, 3, "chunked")
    assert c[:, 0].tolist() == [True, True, True, False, False, False] and c[:, 2].tolist()[:2] == [True, False]
    assert bptt.window_mask(6, 6, "sliding").sum() == bptt.window_mask(6, 6, "chunked").sum() == 21


def test_window_reach_of_a_loss_at_the_end():
    """Sliding window k covers the loss's step and k - 1 earlier ones; chunks reach back to their first step."""
    T = 12
    last = lambda k, mode: [s for s in range(T) if bptt.window_mask(T, k, mode)[T - 1 - s, s]]  # noqa: E731
    for k in range(1, T + 1):
        assert last(k, "sliding") == list(range(T - k, T))
        assert last(k, "chunked") == list(range((T - 1) // k * k, T))
    # step index 6 (1-based step 7, lag 5 before the end) is reached by chunks only for k = 6 and k = 12
    assert [k for k in range(1, T + 1) if 6 in last(k, "chunked")] == [6, 12]


@pytest.mark.parametrize("k,mode", [(1, "sliding"), (2, "sliding"), (2, "chunked"), (3, "chunked")])
def test_truncated_gradient_is_the_gradient_of_no_loss(k, mode):
    """Its Jacobian with respect to W_hh is not symmetric (a gradient's Jacobian is a Hessian); full BPTT's is."""
    rnn, lin, p, x, y, h0, dhs, _, _ = setup(T=6, B=2, I=2, H=3)
    V, c = lin.weight.detach().numpy(), lin.bias.detach().numpy()
    H, eps = p["weight_hh"].shape[0], 1e-6
    asym = {}
    for window in (k, x.shape[0]):
        J = np.zeros((H * H, H * H))
        for n in range(H * H):
            for sign in (1, -1):
                q = {key: v.copy() for key, v in p.items()}
                q["weight_hh"].flat[n] += sign * eps
                _, dq, _ = bptt.readout_loss(cells.rnn_forward(x, h0, q)[0], V, c, y)
                J[:, n] += sign * bptt.truncated_gradient(x, h0, q, dq, window, mode)["weight_hh"].ravel() / (2 * eps)
        asym[window] = np.linalg.norm(J - J.T) / np.linalg.norm(J)
    assert asym[x.shape[0]] < 1e-6 and asym[k] > 0.1


def test_lstm_detach_every_keeps_the_forward():
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(2, 3, batch_first=True).double()
    x = torch.randn(4, 9, 2, dtype=torch.float64)
    out, (h, c) = bptt.detach_every(lstm, x, 4)
    ref, (hr, cr) = lstm(x)
    assert out.shape == ref.shape and torch.allclose(out, ref) and torch.allclose(c, cr)


def test_stored_floats_grow_linearly_with_T():
    p = cells.init_params("rnn", 3, 5)
    counts = [bptt.stored_floats(cells.rnn_forward(np.ones((T, 2, 3)), np.zeros((2, 5)), p)[2]) for T in (10, 20)]
    assert counts == [10 * 2 * 3 + 21 * 2 * 5, 20 * 2 * 3 + 41 * 2 * 5]


def test_cosine():
    assert bptt.cosine([1, 0], [2, 0]) == 1.0 and abs(bptt.cosine([1, 0], [0, 3])) < 1e-15
    assert bptt.cosine([0, 0], [0, 0]) == 1.0 and bptt.cosine([0, 0], [1, 0]) == 0.0


@pytest.mark.parametrize("lam", [0.3, 0.5, 1.0, 1.5])
def test_truncation_experiment_matches_the_slow_way(lam):
    T, k = 30, 4
    r = bptt.truncation_experiment(T=T, lambda_1=lam, k=k, H=8)
    x, h0, p, dhs = bptt.truncation_setup(T=T, lambda_1=lam, H=8)
    full = bptt.step_contributions(x, h0, p, dhs)
    for w in (1, k, T):
        slow = bptt.truncated_gradient(x, h0, p, dhs, w)["weight_hh"]
        assert abs(r["cosine"][w - 1] - bptt.cosine(slow, full["weight_hh"].sum(0))) < 1e-10
    assert abs(r["cosine"][-1] - 1.0) < 1e-12 and r["cos_k"] == r["cosine"][k - 1]
    assert np.allclose(r["step_norm_full"], np.linalg.norm(full["weight_hh"], axis=(1, 2)), rtol=1e-10)
    assert np.all(np.isfinite(r["step_norm_truncated"])) and np.all(r["step_norm_truncated"] > 0)


def test_truncation_costs_more_direction_when_the_recurrence_does_not_contract():
    contract = bptt.truncation_experiment(lambda_1=0.5)["cosine"]
    ortho = bptt.truncation_experiment(lambda_1=1.0)["cosine"]
    assert contract[4] > 0.99 and ortho[4] < 0.95
    assert np.all(ortho[:10] < contract[:10])
    expand = bptt.truncation_experiment(lambda_1=1.5)["cosine"]
    assert np.all(expand[:-1] < ortho[:-1]) and expand[19] < np.cos(np.radians(45))  # λ₁ = 1.5: k = 20 is 51° off


@pytest.mark.parametrize("call,match", [
    (lambda p, x, h0, dhs: bptt.step_contributions(x, h0, p, dhs[:-1]), "dhs must be"),
    (lambda p, x, h0, dhs: bptt.local_gradient(x[..., :2], h0, p, dhs), "input_size"),
    (lambda p, x, h0, dhs: bptt.error_by_distance(x, h0[:1], p, dhs), "h0 must be"),
    (lambda p, x, h0, dhs: bptt.truncated_gradient(x, h0, p, dhs, 0), "k must be"),
    (lambda p, x, h0, dhs: bptt.truncated_gradient(x, h0, p, dhs, 99), "k must be"),
    (lambda p, x, h0, dhs: bptt.truncated_gradient(x, h0, p, dhs, 2, "random"), "mode must be"),
    (lambda p, x, h0, dhs: bptt.rtrl_weight_hh_grad(x, h0, p, dhs, "softplus"), "nonlinearity"),
    (lambda p, x, h0, dhs: bptt.readout_loss(dhs, np.ones((2, 5)), np.ones(2), np.ones((7, 3, 2))), "weight must be"),
    (lambda p, x, h0, dhs: bptt.cosine([1, 2], [1, 2, 3]), "same size"),
    (lambda p, x, h0, dhs: bptt.truncation_experiment(T=10, k=11), "k must be"),
    (lambda p, x, h0, dhs: bptt.detach_every(torch.nn.RNN(3, 4), torch.zeros(2, 3), 2), "3-dim"),
])
def test_validation(call, match):
    rnn, lin, p, x, y, h0, dhs, _, _ = setup()
    with pytest.raises(ValueError, match=match) as err:
        call(p, x, h0, dhs)
    assert "Expected" in str(err.value)
